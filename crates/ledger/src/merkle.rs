//! RFC 9162 (Certificate Transparency v2) Merkle tree hashing, compact ranges, and inclusion /
//! consistency proofs with their verification algorithms (sections 2.1.1–2.1.4).
//!
//! Domain separation: leaves are hashed with prefix `0x00`, interior nodes with `0x01`; the
//! ledger's local hash chain (never part of a proof) uses `0x02`.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The leaf hash of a record given as its parts, without assembling the record in memory:
/// `SHA-256(0x00 || "TWR1" || 1 || kind || 0u16 || index || received || len || source || len ||
/// payload)` (see [`crate::record`]).
pub fn record_leaf_hash(kind: u8, index: u64, received: i64, source: &str, payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    let mut head = [0u8; 27];
    head[0] = 0;
    head[1..5].copy_from_slice(crate::record::RECORD_MAGIC);
    head[5] = crate::record::RECORD_VERSION;
    head[6] = kind;
    // head[7..9] flags = 0
    head[9..17].copy_from_slice(&index.to_be_bytes());
    head[17..25].copy_from_slice(&received.to_be_bytes());
    head[25..27].copy_from_slice(&(source.len() as u16).to_be_bytes());
    h.update(head);
    h.update(source.as_bytes());
    h.update((payload.len() as u32).to_be_bytes());
    h.update(payload);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x02 || previous || leaf)`: one link of the ledger's local hash chain.
pub fn chain_next(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([2u8]);
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// The chain value before the first record: `SHA-256(0x02 || origin)`.
pub fn chain_seed(origin: &str) -> Hash {
    let mut h = Sha256::new();
    h.update([2u8]);
    h.update(origin.as_bytes());
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH over a slice of leaf hashes (RFC 9162 2.1.1).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Where leaf hashes and (optionally) cached subtree roots come from when building proofs.
pub trait HashSource {
    /// Leaf hashes of `[begin, end)`.
    fn leaf_hashes(&self, begin: u64, end: u64) -> Result<Vec<Hash>, String>;

    /// The root of the aligned perfect subtree `[begin, begin + 2^level)`, if cached.
    fn cached_subtree(&self, _level: u32, _begin: u64) -> Option<Hash> {
        None
    }
}

impl HashSource for [Hash] {
    fn leaf_hashes(&self, begin: u64, end: u64) -> Result<Vec<Hash>, String> {
        self.get(begin as usize..end as usize)
            .map(<[Hash]>::to_vec)
            .ok_or_else(|| format!("leaves [{begin}, {end}) out of range (have {})", self.len()))
    }
}

impl HashSource for Vec<Hash> {
    fn leaf_hashes(&self, begin: u64, end: u64) -> Result<Vec<Hash>, String> {
        self.as_slice().leaf_hashes(begin, end)
    }
}

/// MTH of `[begin, end)`, using cached perfect subtrees where available.
pub fn subtree_root<S: HashSource + ?Sized>(src: &S, begin: u64, end: u64) -> Result<Hash, String> {
    let n = end - begin;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && n > 1 {
        let level = n.trailing_zeros();
        if begin.is_multiple_of(n) {
            if let Some(h) = src.cached_subtree(level, begin) {
                return Ok(h);
            }
        }
    }
    if n <= 256 {
        return Ok(root_of(&src.leaf_hashes(begin, end)?));
    }
    let k = split_point(n);
    Ok(node_hash(
        &subtree_root(src, begin, begin + k)?,
        &subtree_root(src, begin + k, end)?,
    ))
}

/// RFC 9162 inclusion proof (PATH) of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, String> {
    if index >= size {
        return Err(format!("index {index} is not below tree size {size}"));
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: HashSource + ?Sized>(
    src: &S,
    m: u64,
    begin: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), String> {
    let n = end - begin;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, begin, begin + k, out)?;
        out.push(subtree_root(src, begin + k, end)?);
    } else {
        path(src, m - k, begin + k, end, out)?;
        out.push(subtree_root(src, begin, begin + k)?);
    }
    Ok(())
}

/// RFC 9162 consistency proof (PROOF) between tree sizes `old` and `new`.
pub fn consistency_proof<S: HashSource + ?Sized>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, String> {
    if old > new {
        return Err(format!("old size {old} is larger than new size {new}"));
    }
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    subproof(src, old, 0, new, true, &mut out)?;
    Ok(out)
}

fn subproof<S: HashSource + ?Sized>(
    src: &S,
    m: u64,
    begin: u64,
    end: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<(), String> {
    let n = end - begin;
    if m == n {
        if !b {
            out.push(subtree_root(src, begin, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, begin, begin + k, b, out)?;
        out.push(subtree_root(src, begin + k, end)?);
    } else {
        subproof(src, m - k, begin + k, end, false, out)?;
        out.push(subtree_root(src, begin, begin + k)?);
    }
    Ok(())
}

/// RFC 9162 2.1.3.2: verify that `leaf` is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &r == root
}

/// RFC 9162 2.1.4.2: verify that the tree of `old` leaves with `old_root` is a prefix of the
/// tree of `new` leaves with `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty() && old_root == &empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    &fr == old_root && &sr == new_root && snode == 0
}

/// A compact range `[0, size)`: the roots of the perfect subtrees that cover it, largest first
/// (one per set bit of `size`). This is the writer's whole tree state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Rebuild from a size and its subtree roots.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Result<Frontier, String> {
        if nodes.len() != size.count_ones() as usize {
            return Err(format!(
                "a frontier of size {size} has {} nodes, not {}",
                size.count_ones(),
                nodes.len()
            ));
        }
        Ok(Frontier { size, nodes })
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.append_subtree(0, leaf)
            .expect("a single leaf is always aligned");
    }

    /// Append the root of a perfect subtree of `2^level` leaves starting at the current size.
    /// Fails when the subtree is not aligned (the size is not a multiple of `2^level`).
    pub fn append_subtree(&mut self, level: u32, hash: Hash) -> Result<(), String> {
        let width = 1u64 << level;
        if !self.size.is_multiple_of(width) {
            return Err(format!(
                "a subtree of {width} leaves cannot start at {}",
                self.size
            ));
        }
        let mut h = hash;
        let mut lvl = level;
        // Merge with equal-sized left siblings (binary addition on the size).
        while self.size & (1u64 << lvl) != 0 {
            let left = self.nodes.pop().ok_or("frontier out of nodes")?;
            h = node_hash(&left, &h);
            self.size -= 1u64 << lvl;
            lvl += 1;
        }
        self.nodes.push(h);
        self.size += 1u64 << lvl;
        Ok(())
    }

    /// The tree root.
    pub fn root(&self) -> Hash {
        match self.nodes.split_last() {
            None => empty_root(),
            Some((last, rest)) => rest.iter().rev().fold(*last, |acc, n| node_hash(n, &acc)),
        }
    }
}

/// The aligned perfect subtrees that exactly cover `[begin, end)`, as `(start, level)`, left to
/// right (what a retention tombstone records so the pruned range can be merged back in).
pub fn range_decomposition(begin: u64, end: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let mut a = begin;
    while a < end {
        let mut level = if a == 0 {
            63 - (end - a).leading_zeros()
        } else {
            a.trailing_zeros()
        };
        while a + (1u64 << level) > end {
            level -= 1;
        }
        out.push((a, level));
        a += 1u64 << level;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent implementation straight from RFC 9162's recursive definitions, on leaf
    /// *data*, to check the iterative code against.
    mod reference {
        use sha2::{Digest, Sha256};

        fn h(parts: &[&[u8]]) -> [u8; 32] {
            let mut s = Sha256::new();
            for p in parts {
                s.update(p);
            }
            s.finalize().into()
        }

        pub fn mth(d: &[Vec<u8>]) -> [u8; 32] {
            let n = d.len();
            if n == 0 {
                return h(&[]);
            }
            if n == 1 {
                return h(&[&[0], &d[0]]);
            }
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            h(&[&[1], &mth(&d[..k]), &mth(&d[k..])])
        }

        pub fn path(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
            let n = d.len();
            if n <= 1 {
                return vec![];
            }
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            if m < k {
                let mut p = path(m, &d[..k]);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = path(m - k, &d[k..]);
                p.push(mth(&d[..k]));
                p
            }
        }

        pub fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<[u8; 32]> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            if m <= k {
                let mut p = subproof(m, &d[..k], b);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = subproof(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
                p
            }
        }
    }

    fn data(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
    }

    #[test]
    fn rfc6962_test_vectors() {
        // The eight leaves of the Certificate Transparency reference tests.
        let leaves: Vec<Vec<u8>> = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| hex::decode(s).unwrap())
        .collect();
        let hashes: Vec<Hash> = leaves.iter().map(|d| leaf_hash(d)).collect();
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let mut f = Frontier::new();
        for (i, want) in roots.iter().enumerate() {
            f.push(hashes[i]);
            assert_eq!(
                hex::encode(root_of(&hashes[..=i])),
                *want,
                "root({})",
                i + 1
            );
            assert_eq!(hex::encode(f.root()), *want, "frontier root({})", i + 1);
        }
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn proofs_match_the_reference_and_verify() {
        for n in 1..=70usize {
            let d = data(n);
            let hashes: Vec<Hash> = d.iter().map(|x| leaf_hash(x)).collect();
            let root = root_of(&hashes);
            assert_eq!(root, reference::mth(&d), "root {n}");
            for m in 0..n {
                let p = inclusion_proof(&hashes, m as u64, n as u64).unwrap();
                assert_eq!(p, reference::path(m, &d), "path {m} {n}");
                assert!(
                    verify_inclusion(m as u64, n as u64, &hashes[m], &p, &root),
                    "verify {m}/{n}"
                );
                // negatives: wrong leaf, wrong index, wrong size, bit flips, truncation, extension
                assert!(!verify_inclusion(
                    m as u64,
                    n as u64,
                    &leaf_hash(b"other"),
                    &p,
                    &root
                ));
                if n > 1 {
                    assert!(
                        !verify_inclusion(((m + 1) % n) as u64, n as u64, &hashes[m], &p, &root)
                            || hashes[m] == hashes[(m + 1) % n]
                    );
                    // the proof against the real root of a bigger tree
                    let mut more = hashes.clone();
                    more.push(leaf_hash(b"next"));
                    assert!(
                        !verify_inclusion(m as u64, n as u64 + 1, &hashes[m], &p, &root_of(&more)),
                        "size+1 {m}/{n}"
                    );
                }
                for i in 0..p.len() {
                    let mut bad = p.clone();
                    bad[i][i % 32] ^= 1;
                    assert!(!verify_inclusion(
                        m as u64, n as u64, &hashes[m], &bad, &root
                    ));
                }
                if !p.is_empty() {
                    assert!(!verify_inclusion(
                        m as u64,
                        n as u64,
                        &hashes[m],
                        &p[..p.len() - 1],
                        &root
                    ));
                }
                let mut longer = p.clone();
                longer.push(root);
                assert!(!verify_inclusion(
                    m as u64, n as u64, &hashes[m], &longer, &root
                ));
            }
            for m in 1..=n {
                let old_root = root_of(&hashes[..m]);
                let p = consistency_proof(&hashes, m as u64, n as u64).unwrap();
                if m < n {
                    assert_eq!(p, reference::subproof(m, &d, true), "subproof {m} {n}");
                }
                assert!(
                    verify_consistency(m as u64, n as u64, &old_root, &root, &p),
                    "consistency {m}/{n}"
                );
                assert!(!verify_consistency(
                    m as u64,
                    n as u64,
                    &leaf_hash(b"x"),
                    &root,
                    &p
                ));
                for i in 0..p.len() {
                    let mut bad = p.clone();
                    bad[i][0] ^= 0x80;
                    assert!(
                        !verify_consistency(m as u64, n as u64, &old_root, &root, &bad),
                        "flip {i} {m}/{n}"
                    );
                }
                if !p.is_empty() {
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64,
                        &old_root,
                        &root,
                        &p[1..]
                    ));
                    // swapped roots
                    assert!(!verify_consistency(
                        m as u64, n as u64, &root, &old_root, &p
                    ));
                }
            }
        }
    }

    #[test]
    fn record_leaf_hash_matches_the_encoding() {
        let mut b = Vec::new();
        crate::record::encode(
            trailwarden_model::RecordKind::Quarantine,
            9,
            trailwarden_model::Timestamp(-5),
            "src",
            b"payload",
            &mut b,
        )
        .unwrap();
        assert_eq!(leaf_hash(&b), record_leaf_hash(7, 9, -5, "src", b"payload"));
    }

    #[test]
    fn frontier_merges_arbitrary_ranges() {
        let hashes: Vec<Hash> = data(100).iter().map(|x| leaf_hash(x)).collect();
        for (a, b) in [
            (0u64, 100u64),
            (37, 64),
            (5, 16),
            (64, 100),
            (99, 100),
            (1, 2),
        ] {
            let mut f = Frontier::new();
            for h in &hashes[..a as usize] {
                f.push(*h);
            }
            for (start, level) in range_decomposition(a, b) {
                let sub = root_of(&hashes[start as usize..(start + (1 << level)) as usize]);
                f.append_subtree(level, sub).unwrap();
            }
            assert_eq!(f.size(), b);
            assert_eq!(f.root(), root_of(&hashes[..b as usize]), "[{a},{b})");
        }
        let mut f = Frontier::new();
        f.push(hashes[0]);
        assert!(
            f.append_subtree(1, hashes[1]).is_err(),
            "misaligned subtree"
        );
    }

    proptest::proptest! {
        #[test]
        fn big_tree_proofs_verify(n in 1u64..5000, seed in 0u64..1000) {
            let hashes: Vec<Hash> = (0..n).map(|i| leaf_hash(&(i ^ seed).to_be_bytes())).collect();
            let root = root_of(&hashes);
            let m = seed % n;
            let p = inclusion_proof(&hashes, m, n).unwrap();
            proptest::prop_assert!(verify_inclusion(m, n, &hashes[m as usize], &p, &root));
            let old = 1 + seed % n;
            let c = consistency_proof(&hashes, old, n).unwrap();
            proptest::prop_assert!(verify_consistency(old, n, &root_of(&hashes[..old as usize]), &root, &c));
        }
    }
}
