#!/usr/bin/env python3
"""Per-kernel table from Nsight Compute's `--print-summary per-kernel` text output.

Usage: bench/ncu_kernels.py NCU_TXT [--min-invocations N]

Reads the summary that `ncu --metrics gpu__time_duration.sum --print-summary per-kernel <program>`
prints and writes one line per kernel: invocations, mean duration (us), grid x block, name.
Kernels called at least --min-invocations times (default 400: once per layer in a few decode
steps or prefills of a 64-layer model, unlike the one-off setup kernels) are marked with '*', and
their mean durations are summed: one call of each, i.e. one layer when each runs once per layer.
ncu runs every kernel alone, so the sum runs above the time of a CUDA graph of the same kernels.
"""
import argparse
import re
import sys

HEAD = re.compile(r'^\s+(\S.*?)\s+\((\d+), (\d+), (\d+)\)x\((\d+), (\d+), (\d+)\).*Invocations (\d+)')
SCALE = {'ns': 1e-3, 'us': 1.0, 'usecond': 1.0, 'ms': 1e3, 'msecond': 1e3, 's': 1e6, 'second': 1e6}


def parse(lines):
    """Yields (invocations, mean_us, launch shape, short name) per kernel of the summary."""
    name = None
    for line in lines:
        m = HEAD.match(line)
        if m:
            shape = '(%s,%s,%s)x%s' % (m.group(2), m.group(3), m.group(4), m.group(5))
            name = (m.group(1), shape, int(m.group(8)))
            continue
        if name and 'gpu__time_duration.sum' in line:
            fields = line.split()
            unit = fields[1]
            if unit not in SCALE:
                raise ValueError('unknown duration unit %r in: %s' % (unit, line.strip()))
            mean = float(fields[-1].replace(',', '')) * SCALE[unit]
            short = re.sub(r'\(.*', '', name[0]).replace('void ', '')
            yield name[2], mean, name[1], short
            name = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('ncu_txt')
    ap.add_argument('--min-invocations', type=int, default=400)
    args = ap.parse_args()
    with open(args.ncu_txt, errors='replace') as f:
        rows = list(parse(f))
    if not rows:
        print('no per-kernel summary found in %s (was ncu run with --print-summary per-kernel '
              'and --metrics gpu__time_duration.sum?)' % args.ncu_txt, file=sys.stderr)
        return 1
    total = 0.0
    for inv, mean, shape, short in rows:
        marked = inv >= args.min_invocations
        total += mean if marked else 0.0
        print('%s %6d %9.2f us  %-16s %s' % ('*' if marked else ' ', inv, mean, shape, short[:110]))
    print('sum of the marked kernels\' mean durations: %.1f us' % total)
    return 0


if __name__ == '__main__':
    sys.exit(main())
