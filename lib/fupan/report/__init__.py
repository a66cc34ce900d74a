"""From numbers to the deck: what a run records (``results``), slides shown in a notebook
(``show``), charts, the HTML deck (``deck``, ``templates/``), the quality gate, the glossary
and summary slides, and the notebooks' start-up helper (``notebook``)."""
