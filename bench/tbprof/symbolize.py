#!/usr/bin/env python3
"""scripts/profile's report: tbprof's counts by function. Usage:
symbolize.py <tbprof output> <System.map> <job output with '@ks' lines (module kallsyms)> [top N]"""
import bisect, collections, shutil, subprocess, sys

prof, sysmap, jobout = sys.argv[1:4]
top = int(sys.argv[4]) if len(sys.argv) > 4 else 40
syms = []
for line in open(sysmap):
    a, t, n = line.split()[:3]
    if t in "tTwW":
        syms.append((int(a, 16), n))
for line in open(jobout):
    p = line.split()
    if p[:1] == ["@ks"] and len(p) >= 4 and p[2] in "tT":
        syms.append((int(p[1], 16), "[module] " + p[3]))
syms.sort()
addrs = [a for a, _ in syms]
per = collections.Counter()
user = kernel = 0
for line in open(prof):
    if line.startswith("#"):
        print(line.strip())
        continue
    va, insns, _ = line.split()
    va, insns = int(va, 16), int(insns)
    if va < 0xFFFF800000000000:
        user += insns
        continue
    kernel += insns
    i = bisect.bisect_right(addrs, va) - 1
    per[syms[i][1] if i >= 0 else "?"] += insns
rows = [f"{n:12d} {100 * n / max(kernel, 1):6.2f}% {name}" for name, n in per.most_common(top)]
# Rust symbols demangled when LLVM's demangler is there.
filt = shutil.which("llvm-cxxfilt-19")
if filt:
    rows = subprocess.run([filt], input="\n".join(rows), capture_output=True, text=True).stdout.splitlines()
print(f"instructions while armed: kernel {kernel}, user {user}")
print("\n".join(rows))
