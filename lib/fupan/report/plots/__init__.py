"""Chart functions, one module per chapter: ``plot_*(…, ax=None) -> Axes``.

Each takes the frame a chapter function returned (never raw data) and draws on ``ax`` when
given, otherwise on a new figure made by :func:`fupan.report.charts.new`, so a notebook cell
reads ``ax = plot_x(frame); show.figure(ax.figure)`` and an analyst can place the same chart
on an axes of their own. Words come from the locale; nothing here computes a number.
"""
