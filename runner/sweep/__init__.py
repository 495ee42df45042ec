"""Sweep expansion: a Manifest in, a lazy and deterministic stream of Jobs out. Pure.

Each prompt has a job *space*: the cartesian product of its units (its vars
in declared order, then the sweep axes in declared order, then the zip
groups), walked in odometer order with the last unit varying fastest; minus
the combinations an `exclude` entry matches; then the `include` entries in
file order. Every combination yields `repeat` jobs (repeat index innermost).
Prompts come in file order and `Job.index` counts across all of them.

Nothing is materialised: `itertools.product` holds only the unit lists (a
`vars_from` file's rows are never given to it: `space.product` streams them
as the outermost loop, re-reading the file), and
include de-duplication is tested against the product's *definition* (is
each value in its unit's list? does an exclude match?) rather than against
a set of produced jobs. Counts, images and credits come from arithmetic over
the units (`tally`), so `runner plan` of a million jobs walks only the units
that decide a job's price or its exclusion.

    space.py      a prompt's units and entries, its combinations, include de-duplication
    expand.py     the jobs of those combinations (`expand`), a subset of them (`restrict`)
    tally.py      jobs, images and credits by arithmetic over the units
    fit.py        the leading jobs of one prompt that fit in a cap (µ$), by arithmetic
    plan_rows.py  a plan's rows (per prompt or prompts file) and the jobs within its cap
"""

from runner.sweep.expand import expand, restrict
from runner.sweep.fit import fit_in
from runner.sweep.plan_rows import MAX_WALKED_JOBS, SubsetTally, tally_files, tally_subset
from runner.sweep.space import Assignment, Space, assignments, spaces
from runner.sweep.tally import Tally, count_jobs, job_credits, tally

__all__ = [
    "MAX_WALKED_JOBS",
    "Assignment",
    "Space",
    "SubsetTally",
    "Tally",
    "assignments",
    "count_jobs",
    "expand",
    "fit_in",
    "job_credits",
    "restrict",
    "spaces",
    "tally",
    "tally_files",
    "tally_subset",
]
