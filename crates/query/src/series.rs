//! Time series: what `make-series` builds (arrays of values on a regular time axis) and the
//! `series_*` functions over them, following the algorithms the KQL reference documents:
//! `series_decompose` (seasonal = median of the points in the same phase, trend = average or
//! least-squares line of the de-seasoned series, baseline = seasonal + trend, residual = x − baseline),
//! `series_outliers` (Tukey's fences on the 10th–90th percentile range for `ctukey`, 25th–75th for
//! `tukey`), `series_decompose_anomalies` (outlier scores of the residual, flagged past the
//! threshold), `series_fir`, `series_stats`, `series_fit_line` and the `series_fill_*` family.
//!
//! Series are dynamic values: JSON arrays. Nulls and non-numbers in a series are missing points.

use crate::udf::Strs;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use datafusion::common::Result;
use serde_json::{json, Value};
use std::sync::Arc;

/// A series read from JSON text (missing points are `None`); `None` when it is not an array.
pub fn read(text: &str) -> Option<Vec<Option<f64>>> {
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Array(v) => Some(v.iter().map(Value::as_f64).collect()),
        _ => None,
    }
}

fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn arr(v: &[f64]) -> Value {
    Value::Array(v.iter().map(|x| num(*x)).collect())
}

/// Row `i` of argument `k` as f64 (a literal argument is one row for all).
fn f64_arg(a: &[ArrayRef], k: usize, i: usize) -> Option<f64> {
    let col = a.get(k)?;
    let j = if col.len() == 1 { 0 } else { i };
    if col.is_null(j) {
        return None;
    }
    let c = datafusion::arrow::compute::cast(col, &datafusion::arrow::datatypes::DataType::Float64)
        .ok()?;
    Some(c.as_primitive::<Float64Type>().value(j))
}

fn str_arg(a: &[ArrayRef], k: usize, i: usize) -> Option<&str> {
    let col = a.get(k)?;
    let j = if col.len() == 1 { 0 } else { i };
    Strs::of(col).ok()?.get(j)
}

fn bool_arg(a: &[ArrayRef], k: usize, i: usize) -> Option<bool> {
    let col = a.get(k)?;
    let j = if col.len() == 1 { 0 } else { i };
    let b = col.as_boolean_opt()?;
    (!b.is_null(j)).then(|| b.value(j))
}

/// Apply `f` to the series of argument 0 of each row; its JSON result is the row's value.
fn per_series(
    a: &[ArrayRef],
    n: usize,
    f: impl Fn(&[Option<f64>], usize) -> Option<Value>,
) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    let mut b = StringBuilder::with_capacity(n, n * 64);
    for i in 0..n {
        match s.get(i).and_then(read).and_then(|x| f(&x, i)) {
            Some(v) => b.append_value(v.to_string()),
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `make-series` after its aggregation: the values of the bins that had rows (`values`, at times
/// `bins`) placed on the axis of `n` bins from `from` by `step`; the others get `default`.
/// Arguments: values (list), bins (list of datetimes), from, step, n (ns, ns, count), default
/// (JSON text), whole (bool: write integers).
pub fn k_series_fill(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let values = a[0].as_list::<i32>();
    let bins = a[1].as_list::<i32>();
    let mut b = StringBuilder::with_capacity(n, n * 64);
    for i in 0..n {
        let (Some(from), Some(step), Some(len)) =
            (f64_arg(a, 2, i), f64_arg(a, 3, i), f64_arg(a, 4, i))
        else {
            b.append_null();
            continue;
        };
        let default: Value = str_arg(a, 5, i)
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null);
        let whole = bool_arg(a, 6, i).unwrap_or(false);
        let mut out = vec![default; len as usize];
        if !values.is_null(i) && !bins.is_null(i) {
            let vs = values.value(i);
            let bs = bins.value(i);
            let vs = datafusion::arrow::compute::cast(
                &vs,
                &datafusion::arrow::datatypes::DataType::Float64,
            )?;
            let vs = vs.as_primitive::<Float64Type>();
            let bs = bs.as_primitive::<TimestampNanosecondType>();
            for j in 0..vs.len().min(bs.len()) {
                if bs.is_null(j) {
                    continue;
                }
                let k = ((bs.value(j) as f64 - from) / step).floor();
                if k < 0.0 || k >= len {
                    continue;
                }
                out[k as usize] = if vs.is_null(j) {
                    Value::Null
                } else if whole {
                    json!(vs.value(j) as i64)
                } else {
                    num(vs.value(j))
                };
            }
        }
        b.append_value(Value::Array(out).to_string());
    }
    Ok(Arc::new(b.finish()))
}

/// The time axis of `make-series`: `n` datetimes from `from` by `step` (ns).
pub fn k_series_axis(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let mut b = StringBuilder::with_capacity(n, n * 64);
    for i in 0..n {
        let (Some(from), Some(step), Some(len)) = (
            a[0].as_primitive_opt::<Int64Type>()
                .map(|x| x.value(if x.len() == 1 { 0 } else { i })),
            a[1].as_primitive_opt::<Int64Type>()
                .map(|x| x.value(if x.len() == 1 { 0 } else { i })),
            a[2].as_primitive_opt::<Int64Type>()
                .map(|x| x.value(if x.len() == 1 { 0 } else { i })),
        ) else {
            b.append_null();
            continue;
        };
        let v: Vec<Value> = (0..len)
            .map(|k| Value::String(trailwarden_model::Timestamp(from + k * step).to_string()))
            .collect();
        b.append_value(Value::Array(v).to_string());
    }
    Ok(Arc::new(b.finish()))
}

fn present(x: &[Option<f64>]) -> Vec<f64> {
    x.iter().flatten().copied().collect()
}

/// Percentile with linear interpolation between closest ranks (`p` in 0..=100).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let r = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (r - lo as f64)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(v, 50.0)
}

/// `series_stats`: min, min_idx, max, max_idx, avg, stdev (sample), variance (sample).
pub fn stats(x: &[Option<f64>]) -> Value {
    let v = present(x);
    if v.is_empty() {
        return json!({"min": null, "min_idx": null, "max": null, "max_idx": null, "avg": null, "stdev": null, "variance": null});
    }
    let (mut min_i, mut max_i) = (None::<usize>, None::<usize>);
    for (i, p) in x.iter().enumerate() {
        if let Some(p) = p {
            if min_i.is_none_or(|m| *p < x[m].unwrap_or(f64::INFINITY)) {
                min_i = Some(i);
            }
            if max_i.is_none_or(|m| *p > x[m].unwrap_or(f64::NEG_INFINITY)) {
                max_i = Some(i);
            }
        }
    }
    let avg = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|p| (p - avg).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    json!({
        "min": num(min_i.and_then(|i| x[i]).unwrap_or(f64::NAN)), "min_idx": min_i,
        "max": num(max_i.and_then(|i| x[i]).unwrap_or(f64::NAN)), "max_idx": max_i,
        "avg": num(avg), "stdev": num(var.sqrt()), "variance": num(var),
    })
}

/// `series_fit_line`: least squares over the indexes 0..n of the points present.
pub fn fit_line(x: &[Option<f64>]) -> Value {
    let pts: Vec<(f64, f64)> = x
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i as f64, v)))
        .collect();
    let (slope, icept) = line(&pts);
    let fit: Vec<f64> = (0..x.len()).map(|i| icept + slope * i as f64).collect();
    let m = pts.len() as f64;
    let mean = pts.iter().map(|p| p.1).sum::<f64>() / m;
    let variance = pts.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / m;
    let rvariance = pts
        .iter()
        .map(|p| (p.1 - (icept + slope * p.0)).powi(2))
        .sum::<f64>()
        / m;
    let rsquare = if variance > 0.0 {
        1.0 - rvariance / variance
    } else {
        1.0
    };
    json!({
        "rsquare": num(rsquare), "slope": num(slope), "variance": num(variance),
        "rvariance": num(rvariance), "interception": num(icept), "line_fit": arr(&fit),
    })
}

/// Least-squares slope and intercept of points (index, value).
fn line(pts: &[(f64, f64)]) -> (f64, f64) {
    let m = pts.len() as f64;
    if m == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / m, sy / m);
    let sxx: f64 = pts.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, my - slope * mx)
}

/// The period of `x` for seasonality -1: the lag in 4..=n/2 whose autocorrelation is highest,
/// when it reaches `threshold` (`series_periods_detect` scores periods on a 0..1 scale the same way).
pub fn detect_period(x: &[f64], threshold: f64) -> Option<usize> {
    let n = x.len();
    if n < 8 {
        return None;
    }
    // outliers are what the caller looks for: clipped to the 5th–95th percentiles first, so one
    // spike does not hide the period
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = (percentile(&sorted, 5.0), percentile(&sorted, 95.0));
    let x: Vec<f64> = x.iter().map(|v| v.clamp(lo, hi)).collect();
    let mean = x.iter().sum::<f64>() / n as f64;
    let d: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let var: f64 = d.iter().map(|v| v * v).sum();
    if var == 0.0 {
        return None;
    }
    let mut best: Option<(usize, f64)> = None;
    let mut scores = vec![0.0; n / 2 + 1];
    for p in 4..=n / 2 {
        let acf: f64 = (0..n - p).map(|i| d[i] * d[i + p]).sum::<f64>() / var;
        // unbiased for the overlap, so short overlaps are not favoured
        let score = acf * n as f64 / (n - p) as f64;
        scores[p] = score;
        if score >= threshold && best.is_none_or(|(_, s)| score > s + 1e-9) {
            best = Some((p, score));
        }
    }
    // a multiple of the period scores as high as the period: the smallest divisor that scores
    // nearly as well is the period
    best.map(|(p, s)| {
        (4..p)
            .find(|d| p % d == 0 && scores[*d] >= 0.9 * s)
            .unwrap_or(p)
    })
}

/// `series_decompose`: (baseline, seasonal, trend, residual).
#[allow(clippy::type_complexity)]
pub fn decompose(
    x: &[Option<f64>],
    seasonality: i64,
    trend: &str,
    test_points: usize,
    seasonality_threshold: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = x.len();
    let learn = n.saturating_sub(test_points);
    let filled: Vec<f64> = x.iter().map(|v| v.unwrap_or(0.0)).collect();
    let period = match seasonality {
        -1 => detect_period(&filled[..learn], seasonality_threshold),
        p if p > 1 => Some(p as usize),
        _ => None,
    };
    let seasonal: Vec<f64> = match period {
        Some(p) => {
            let phase: Vec<f64> = (0..p)
                .map(|k| {
                    let mut v: Vec<f64> = (k..learn).step_by(p).map(|i| filled[i]).collect();
                    if v.is_empty() {
                        0.0
                    } else {
                        median(&mut v)
                    }
                })
                .collect();
            (0..n).map(|i| phase[i % p]).collect()
        }
        None => vec![0.0; n],
    };
    let deseason: Vec<f64> = (0..n).map(|i| filled[i] - seasonal[i]).collect();
    let trend_v: Vec<f64> = match trend {
        "none" => vec![0.0; n],
        "linefit" => {
            let pts: Vec<(f64, f64)> = (0..learn).map(|i| (i as f64, deseason[i])).collect();
            let (s, c) = line(&pts);
            (0..n).map(|i| c + s * i as f64).collect()
        }
        _ => {
            let avg = if learn > 0 {
                deseason[..learn].iter().sum::<f64>() / learn as f64
            } else {
                0.0
            };
            vec![avg; n]
        }
    };
    let baseline: Vec<f64> = (0..n).map(|i| seasonal[i] + trend_v[i]).collect();
    let residual: Vec<f64> = (0..n).map(|i| filled[i] - baseline[i]).collect();
    (baseline, seasonal, trend_v, residual)
}

/// `series_outliers`: Tukey's test scores. Above the upper percentile: (x − Q_hi) / (Q_hi − Q_lo);
/// below the lower one: (x − Q_lo) / (Q_hi − Q_lo); 0 between them and for missing points.
pub fn outliers(x: &[Option<f64>], lo_p: f64, hi_p: f64) -> Vec<f64> {
    let mut v = present(x);
    v.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = (percentile(&v, lo_p), percentile(&v, hi_p));
    // a flat range (most points equal) would divide by zero: the mean absolute deviation from
    // the median is the unit then, and 1 when every point is equal
    let iqr = if hi - lo > 1e-9 * hi.abs().max(lo.abs()).max(1.0) {
        hi - lo
    } else {
        let m = percentile(&v, 50.0);
        let mad = v.iter().map(|p| (p - m).abs()).sum::<f64>() / v.len().max(1) as f64;
        if mad > 0.0 {
            mad
        } else {
            1.0
        }
    };
    x.iter()
        .map(|p| match p {
            Some(p) if *p > hi => (p - hi) / iqr,
            Some(p) if *p < lo => (p - lo) / iqr,
            _ => 0.0,
        })
        .collect()
}

fn method_range(m: &str) -> (f64, f64) {
    if m == "tukey" {
        (25.0, 75.0)
    } else {
        (10.0, 90.0)
    }
}

/// `series_decompose_anomalies`: (ad_flag, ad_score, baseline).
pub fn decompose_anomalies(
    x: &[Option<f64>],
    threshold: f64,
    seasonality: i64,
    trend: &str,
    test_points: usize,
    method: &str,
    seasonality_threshold: f64,
) -> Value {
    let (baseline, _, _, residual) =
        decompose(x, seasonality, trend, test_points, seasonality_threshold);
    let (lo, hi) = method_range(method);
    let res: Vec<Option<f64>> = residual.iter().map(|v| Some(*v)).collect();
    let score = outliers(&res, lo, hi);
    let flag: Vec<Value> = score
        .iter()
        .map(|s| {
            json!(if *s > threshold {
                1
            } else if *s < -threshold {
                -1
            } else {
                0
            })
        })
        .collect();
    json!({"ad_flag": flag, "ad_score": arr(&score), "baseline": arr(&baseline)})
}

/// `series_fir(x, filter, normalize, center)`.
pub fn fir(x: &[Option<f64>], filter: &[f64], normalize: bool, center: bool) -> Vec<Option<f64>> {
    let sum: f64 = filter.iter().sum();
    let scale = if normalize && sum != 0.0 { sum } else { 1.0 };
    let shift = if center {
        (filter.len() as i64 - 1) / 2
    } else {
        0
    };
    (0..x.len() as i64)
        .map(|i| {
            let mut acc = 0.0;
            for (j, c) in filter.iter().enumerate() {
                let k = i + shift - j as i64;
                if k >= 0 && (k as usize) < x.len() {
                    acc += c * x[k as usize]?;
                }
            }
            Some(acc / scale)
        })
        .collect()
}

fn opt_arr(v: &[Option<f64>]) -> Value {
    Value::Array(v.iter().map(|x| x.map_or(Value::Null, num)).collect())
}

/// The `series_fill_*` functions: `const` (args: value), `forward`, `backward`, `linear`.
pub fn fill(x: &[Option<f64>], how: &str, c: Option<f64>) -> Vec<Option<f64>> {
    let mut v = x.to_vec();
    match how {
        "const" => v.iter_mut().for_each(|p| *p = p.or(c)),
        "forward" => {
            let mut last = None;
            for p in v.iter_mut() {
                if p.is_some() {
                    last = *p;
                } else {
                    *p = last;
                }
            }
        }
        "backward" => {
            let mut next = None;
            for p in v.iter_mut().rev() {
                if p.is_some() {
                    next = *p;
                } else {
                    *p = next;
                }
            }
        }
        _ => {
            let known: Vec<usize> = (0..v.len()).filter(|i| v[*i].is_some()).collect();
            for w in known.windows(2) {
                let (a, b) = (w[0], w[1]);
                let (ya, yb) = (v[a].unwrap_or(0.0), v[b].unwrap_or(0.0));
                for (k, slot) in v.iter_mut().enumerate().take(b).skip(a + 1) {
                    *slot = Some(ya + (yb - ya) * (k - a) as f64 / (b - a) as f64);
                }
            }
            // the ends take the nearest known value
            if let (Some(&f), Some(&l)) = (known.first(), known.last()) {
                let (yf, yl) = (v[f], v[l]);
                v[..f].iter_mut().for_each(|p| *p = yf);
                v[l + 1..].iter_mut().for_each(|p| *p = yl);
            }
        }
    }
    v
}

/// `kql_series_stats(x)` → bag.
pub fn k_series_stats(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    per_series(a, n, |x, _| Some(stats(x)))
}

/// `kql_series_fit_line(x)` → bag.
pub fn k_series_fit_line(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    per_series(a, n, |x, _| Some(fit_line(x)))
}

/// `kql_series_decompose(x, seasonality, trend, test_points, threshold)` → bag.
pub fn k_series_decompose(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    per_series(a, n, |x, i| {
        let (b, s, t, r) = decompose(
            x,
            f64_arg(a, 1, i).unwrap_or(-1.0) as i64,
            str_arg(a, 2, i).unwrap_or("avg"),
            f64_arg(a, 3, i).unwrap_or(0.0).max(0.0) as usize,
            f64_arg(a, 4, i).unwrap_or(0.6),
        );
        Some(
            json!({"baseline": arr(&b), "seasonal": arr(&s), "trend": arr(&t), "residual": arr(&r)}),
        )
    })
}

/// `kql_series_decompose_anomalies(x, threshold, seasonality, trend, test_points, method,
/// seasonality_threshold)` → bag.
pub fn k_series_decompose_anomalies(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    per_series(a, n, |x, i| {
        Some(decompose_anomalies(
            x,
            f64_arg(a, 1, i).unwrap_or(1.5),
            f64_arg(a, 2, i).unwrap_or(-1.0) as i64,
            str_arg(a, 3, i).unwrap_or("avg"),
            f64_arg(a, 4, i).unwrap_or(0.0).max(0.0) as usize,
            str_arg(a, 5, i).unwrap_or("ctukey"),
            f64_arg(a, 6, i).unwrap_or(0.6),
        ))
    })
}

/// `kql_series_outliers(x, kind, ignore_val, min_percentile, max_percentile)` → array.
pub fn k_series_outliers(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    per_series(a, n, |x, i| {
        let kind = str_arg(a, 1, i).unwrap_or("ctukey");
        let ignore = f64_arg(a, 2, i);
        let x: Vec<Option<f64>> = x.iter().map(|v| v.filter(|v| Some(*v) != ignore)).collect();
        let (lo, hi) = if kind == "tukey" {
            (25.0, 75.0)
        } else {
            (
                f64_arg(a, 3, i).unwrap_or(10.0),
                f64_arg(a, 4, i).unwrap_or(90.0),
            )
        };
        Some(arr(&outliers(&x, lo, hi)))
    })
}

/// `kql_series_fir(x, filter, normalize, center)` → array.
pub fn k_series_fir(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    per_series(a, n, |x, i| {
        let filter: Vec<f64> = read(str_arg(a, 1, i)?)?.into_iter().flatten().collect();
        let normalize = bool_arg(a, 2, i).unwrap_or(true);
        let center = bool_arg(a, 3, i).unwrap_or(false);
        Some(opt_arr(&fir(x, &filter, normalize, center)))
    })
}

/// `kql_series_fill(x, how, const)` → array.
pub fn k_series_fill_gaps(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    per_series(a, n, |x, i| {
        Some(opt_arr(&fill(x, str_arg(a, 1, i)?, f64_arg(a, 2, i))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposition_finds_the_period_and_the_spike() {
        // period 7, one spike at index 30
        let mut x: Vec<Option<f64>> = (0..42)
            .map(|i| Some([1., 2., 3., 4., 5., 6., 7.][i % 7] * 10.))
            .collect();
        x[30] = Some(500.0);
        let v = decompose_anomalies(&x, 1.5, -1, "avg", 0, "ctukey", 0.6);
        let flags: Vec<i64> = v["ad_flag"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_i64().unwrap())
            .collect();
        assert_eq!(flags.iter().filter(|f| **f != 0).count(), 1, "{v}");
        assert_eq!(flags[30], 1);
        assert_eq!(
            detect_period(&x.iter().map(|v| v.unwrap()).collect::<Vec<_>>(), 0.6),
            Some(7)
        );
    }

    #[test]
    fn fir_and_fill() {
        let x = [Some(1.0), Some(2.0), Some(3.0), Some(4.0)];
        assert_eq!(
            fir(&x, &[1.0, 1.0], true, false),
            vec![Some(0.5), Some(1.5), Some(2.5), Some(3.5)]
        );
        assert_eq!(
            fill(&[None, Some(1.0), None, Some(3.0), None], "linear", None),
            vec![Some(1.0), Some(1.0), Some(2.0), Some(3.0), Some(3.0)]
        );
        assert_eq!(
            fill(&[None, Some(1.0), None], "forward", None),
            vec![None, Some(1.0), Some(1.0)]
        );
        let s = stats(&x);
        assert_eq!(s["max_idx"], 3);
        assert_eq!(s["avg"], 2.5);
    }
}
