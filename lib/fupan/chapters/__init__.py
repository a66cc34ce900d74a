"""The analysis behind each chapter notebook, one module per question.

=======================  ==================================================
notebook                 modules
=======================  ==================================================
00_data_check            ``quality``
01_diagnosis             ``diagnosis``, ``funnel``, ``service``, ``touches``
02_churn_root_cause      ``churn``, ``signals``, ``lost``, ``atrisk``
03_ltv_loss              ``clv``
04_strategy_simulation   ``simulate`` (the scenarios file: ``fupan.core.scenarios``)
05_kpi_tracking          ``kpi``
06_followup              ``followup``
=======================  ==================================================

What one slide says and shows is a :class:`fupan.chapters.slide.Slide`, the same for every
chapter; a notebook shows one with ``nb.show(slide, figure)``
(:meth:`fupan.report.notebook.Context.show`).
"""
