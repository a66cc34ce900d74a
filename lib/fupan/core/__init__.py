"""The foundation: run parameters (``params``) and the scenarios file (``scenarios``),
where files are (``paths``), progress
bars and the words a deck shows in two languages (``i18n``, ``locale/``). Imports nothing else
from fupan, so every other room may use it."""
