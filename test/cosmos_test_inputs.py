"""Plain constants shared by test modules (import them from here, never from ``conftest``: the suite has more
than one conftest.py, and ``from conftest import ...`` then resolves to whichever was imported last)."""

DROID_STATE = [0.0, -0.6, 0.0, -2.2, 0.0, 1.6, 0.8, 0.1]
