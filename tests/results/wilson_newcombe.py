"""Wilson score intervals (95%) published by Newcombe (1998), for fupan.measures.outcomes.

How generated: copied by hand (4 decimals as printed) from R. G. Newcombe (1998), Statistics
in Medicine 17:857, table I (the Wilson interval without continuity correction); moved here
unchanged from ``test_outcomes.py``. The test compares with an absolute tolerance of 5e-4.

Each entry: (events, trials) -> (low, high).
"""

WILSON_95 = {
    (81, 263): (0.2553, 0.3662),
    (15, 148): (0.0624, 0.1605),
    (0, 20): (0.0, 0.1611),
}
