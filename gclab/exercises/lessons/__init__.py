"""The course's exercises: one content module per notebook (``nbNN_slug.py``: references,
registered mistakes, hints and cases), and :mod:`~gclab.exercises.lessons.common` for the
properties and cases several lessons share. :mod:`gclab.exercises.registry` imports every
content module on the first lookup of an exercise.
"""
