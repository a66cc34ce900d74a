"""Running a review: the command line (``cli``), executing the notebooks (``runner``) and
the monthly KPI deck (``monthly``)."""
