"""A doctest output checker that reads printed floats to a relative tolerance.

The examples print float32 results (``0.35355338``); another CPU's XLA build may round a last digit
differently (a reduction's order, a fused multiply-add), which is not a change a reader would notice.
Everything else in the output must match as doctest's ``ELLIPSIS | NORMALIZE_WHITESPACE`` requires.
"""

from __future__ import annotations

import doctest
import math
import re

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
RTOL, ATOL = 1e-5, 1e-7
_FLOAT = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


class FloatTolerantChecker(doctest.OutputChecker):
    """Accepts ``got`` where it differs from ``want`` only in floats within ``RTOL`` / ``ATOL``."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        if super().check_output(want, got, optionflags):
            return True
        wanted, found = _FLOAT.findall(want), _FLOAT.findall(got)
        if len(wanted) != len(found) or not wanted:
            return False
        if not all(math.isclose(float(a), float(b), rel_tol=RTOL, abs_tol=ATOL) for a, b in zip(wanted, found)):
            return False
        # The text around the numbers must still match: put the wanted numbers into what was printed.
        numbers = iter(wanted)
        return super().check_output(want, _FLOAT.sub(lambda _: next(numbers), got), optionflags)


def runner() -> doctest.DocTestRunner:
    """A runner with the suite's options and the float-tolerant checker."""
    return doctest.DocTestRunner(checker=FloatTolerantChecker(), optionflags=OPTIONS)
