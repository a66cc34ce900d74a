"""fupan (复盘): a parameterised review workbook.

A map of the house, lowest layer first; a module imports only from its own room or the
rooms above it in this list.

- ``fupan.core``: params and the scenarios file, paths, progress, words in two languages
  (``i18n``, ``locale/``)
- ``fupan.io``: the data contract, loading, validation, the query engine, exports
- ``fupan.measures``: churn (``outcomes``), features, the metric catalogue, segments
- ``fupan.models``: lifetime value (``ltv/``), churn drivers, the health score
- ``fupan.chapters``: the analysis of each chapter notebook (see its docstring)
- ``fupan.report``: results, slides, charts, the deck and its templates
- ``fupan.run``: the command line, the notebook runner, the monthly deck
- ``fupan.demo``: the demo data generator

``python -m fupan`` is the ``fupan`` command (:mod:`fupan.run.cli`).
"""
