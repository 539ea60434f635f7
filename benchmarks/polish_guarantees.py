"""What `--polish` costs (issue 11): distinct-2, lines copied from the training split and milliseconds per
poem, for generate's defaults and the same poems polished, 100 poems per regular form (seed 0), the way
`poetgen evaluate` measures the defaults. Its blind reading is blind_set.py's:

    python benchmarks/blind_set.py --out runs/blind/q161 --seed 161 --setting defaults= --setting "polish=--polish 2"
    python benchmarks/polish_guarantees.py --polish 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time

FORMS_READ = ("wujue", "qijue", "wulv", "qilv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="bundle directory (default: the shipped model)")
    parser.add_argument("--polish", type=int, default=2, help="polishing rounds")
    parser.add_argument("--polish-lines", type=int, default=0, help="lines a round visits, the weakest (0: all)")
    parser.add_argument("--samples", type=int, default=100, help="poems per form")
    args = parser.parse_args()

    from poetgen.bundle import load_bundle
    from poetgen.evaluate import EvalOptions, Evaluation, distinct, line_bodies
    from poetgen.generate import Generator, PoemRequest
    from poetgen.sampling import SampleOptions

    generator = Generator.load(args.model)
    training = Evaluation(load_bundle(args.model, keras=False), EvalOptions()).training_lines
    lines = f" --polish-lines {args.polish_lines}" if args.polish_lines else ""
    print(f"{args.samples} poems per form, seed 0; --polish {args.polish}{lines} against the defaults (the same "
          f"poems before polishing)")
    for form in FORMS_READ:
        request = PoemRequest(form=form, n=args.samples, sample=SampleOptions(seed=0))
        started = time.perf_counter()
        plain = generator.generate(request)
        middle = time.perf_counter()
        polished = generator.polish(generator.prepare(dataclasses.replace(request, polish=args.polish,
                                                                          polish_lines=args.polish_lines)), plain)
        ended = time.perf_counter()
        for name, result, seconds in (("defaults", plain, middle - started), ("polished", polished, ended - started)):
            lines = [line for poem in result["poems"] for line in line_bodies(poem["text"])]
            copied = sum(line in training for line in lines) / len(lines) if training is not None else float("nan")
            replaced = sum(p.get("polished", 0) for p in result["poems"]) / args.samples
            print(f"{form:6s} {name:9s} distinct-2 {distinct(lines, 2):.3f}  copied lines {copied:.3f}  "
                  f"{1000 * seconds / args.samples:7.1f} ms per poem (batch of {args.samples})"
                  + (f"  {replaced:.1f} lines replaced per poem" if name == "polished" else ""), flush=True)


if __name__ == "__main__":
    main()
