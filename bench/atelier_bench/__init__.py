"""The benchmark of `atelier serve` that bench/run drives (bench/drive.py), and what
bench/freshness.py, instructions.py and profile.py share with it.

In the order a run goes: `cli` reads the options; `machine` picks the CPUs and reads
/proc; `catalog` prepares the catalog and draws each scenario's URL list; `servers`
starts the service and its baselines; `load` drives them with oha, wrk or pgbench and
measures one run; `scenarios` declares, per scenario, what it prepares, which targets
it drives and how its result reads; `runner` runs any scenario through the same steps;
`report` takes medians and paired ratios and writes the JSON, Markdown and SVG.
"""
