#!/usr/bin/env python3
"""Deterministic volume for the non-Kubernetes formats (the Kubernetes ones come from
`trailwarden gen`). Usage: gen_formats.py FORMAT N OUT"""
import json, random, sys

fmt, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random(42)
users = ["alice", "bob", "carol", "svc-batch", "root"]
ips = [f"10.1.{i}.{j}" for i in range(4) for j in range(1, 60)]
t0 = 1767600000

def ts(i):
    s = t0 + i // 50
    return s, i % 1000

with open(out, "w") as f:
    for i in range(n):
        s, ms = ts(i)
        iso = f"2026-01-05T{(s // 3600) % 24:02d}:{(s // 60) % 60:02d}:{s % 60:02d}.{ms:03d}Z"
        if fmt == "auditd":
            serial = 1000 + i
            uid = r.choice([0, 1000, 1001])
            f.write(f'type=SYSCALL msg=audit({s}.{ms:03d}:{serial}): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd a2=0 a3=0 items=1 ppid=100 pid={2000 + i % 500} auid={1000 + i % 3} uid={uid} gid={uid} euid={uid} suid={uid} fsuid={uid} egid={uid} sgid={uid} fsgid={uid} tty=pts0 ses={i % 9} comm="cat" exe="/usr/bin/cat" key="files"\n')
            f.write(f'type=CWD msg=audit({s}.{ms:03d}:{serial}): cwd="/home/{r.choice(users)}"\n')
            f.write(f'type=PATH msg=audit({s}.{ms:03d}:{serial}): item=0 name="/etc/{r.choice(["hosts", "passwd", "shadow", "resolv.conf"])}" inode=1234 dev=08:01 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL\n')
            f.write(f'type=PROCTITLE msg=audit({s}.{ms:03d}:{serial}): proctitle=636174002F6574632F686F737473\n')
            f.write(f'type=EOE msg=audit({s}.{ms:03d}:{serial}): \n')
        elif fmt == "syslog":
            if i % 2:
                f.write(f'<38>Jan  5 10:{(i // 60) % 60:02d}:{i % 60:02d} bastion sshd[{4000 + i % 100}]: Failed password for {r.choice(users)} from {r.choice(ips)} port {40000 + i % 20000} ssh2\n')
            else:
                f.write(f'<165>1 {iso} app{i % 7}.example.com payments {i % 900} AUDIT [meta@32473 user="{r.choice(users)}" action="refund"] refund {i} approved\n')
        elif fmt == "docker":
            f.write(json.dumps({"log": f"GET /api/v1/orders/{i} 200 {r.randint(1, 90)}ms\n", "stream": "stdout", "time": iso}) + "\n")
        elif fmt == "cri":
            f.write(f"{iso} stdout F GET /api/v1/orders/{i} 200 {r.randint(1, 90)}ms\n")
        elif fmt == "app":
            f.write(json.dumps({"timestamp": iso, "user_id": f"u-{i % 5000}", "action": r.choice(["card.read", "refund.create", "login"]),
                                "resource": f"cardholder/{i % 10000}", "result": r.choice(["success", "success", "denied"]), "source_ip": r.choice(ips)}) + "\n")
        elif fmt == "azure-activity":
            f.write(json.dumps({"time": iso, "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1",
                                "operationName": r.choice(["MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/READ", "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE"]),
                                "category": "Administrative", "resultType": "Success", "resultSignature": "Succeeded.OK", "callerIpAddress": r.choice(ips),
                                "correlationId": f"c-{i}", "identity": {"claims": {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": f"{r.choice(users)}@contoso.com"}},
                                "level": "Information", "properties": {"statusCode": "OK"}}) + "\n")
        elif fmt == "signin":
            code = r.choice([0, 0, 0, 50126])
            f.write(json.dumps({"time": iso, "operationName": "Sign-in activity", "category": "SignInLogs", "resultType": str(code), "callerIpAddress": r.choice(ips),
                                "properties": {"userPrincipalName": f"{r.choice(users)}@contoso.com", "appDisplayName": "Azure Kubernetes Service AAD Client",
                                               "ipAddress": r.choice(ips), "status": {"errorCode": code}}}) + "\n")
        else:
            sys.exit(f"unknown format {fmt}")
