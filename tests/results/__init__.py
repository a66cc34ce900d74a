"""Reference numbers the tests compare against, one module per source (statsmodels style).

Each module's docstring says where its numbers come from (publication, table, software
version, command) and how they were produced; the tests keep their tolerances next to the
comparison. Numbers computed live by another library in the test itself (statsmodels' PHReg,
scikit-learn) are not stored here.
"""
