"""The experiments: the tasks, the backbone, training, analysis, reproduction and benchmarks.

gclab.experiments.tasks       how the tasks draw their images and labels: longrange and the
                              dense paint, lookalike, twokeys, manykeys, digitkeys, digitgrid
gclab.experiments.data        their seeded splits, stored under data/ (checksummed)
gclab.experiments.confusability  which digit pairs are hard to tell apart (lookalike's keys)
gclab.experiments.models      SmallResNet and ``receptive_field``
gclab.experiments.train       deterministic training loop
gclab.experiments.analysis    attention maps, query-independence, dead blocks, FLOPs, latency
gclab.experiments.dead_trace  why a concatenation NL dies: its live pairs at every training step
gclab.experiments.plan        the plan: models, tasks, seeds, training protocol
gclab.experiments.reproduce   ``gclab reproduce``: runs the plan, merges results
gclab.experiments.comparisons the comparisons per metric (Welch, Fisher, Mann-Whitney), csv columns
gclab.experiments.stats       when a run converged, learned, reached a level; the exact tests
gclab.experiments.keys_read   how many keys a model reads on the key tasks
gclab.experiments.figures     the figures of the results
gclab.experiments.report      ablation.md and the tables the lessons and docs print
gclab.experiments.writeup     the generated tables of docs/experiments.md and the README
gclab.experiments.bench       ``gclab bench``: the blocks against mmcv and timm (runs)
gclab.experiments.bench_groups  the groups it times (Non-local, GC/SE, NumPy) and their peers
gclab.experiments.bench_machine  the machine and code version it records
gclab.experiments.bench_core  its timing, peak-memory and machine-limit primitives
gclab.experiments.bench_report  its targets, tables, CSV and figure

Nothing in :mod:`gclab.nn` or :mod:`gclab.numpy` imports from here.
"""
