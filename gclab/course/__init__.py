"""The course's notebooks: built from their jupytext sources (:mod:`~gclab.course.solutions`
reads the solution regions, :mod:`~gclab.course.copies` makes the learner and solution copies,
:mod:`~gclab.course.notebooks` is ``gclab notebooks``), executed (:mod:`~gclab.course.execute`),
drawn (:mod:`~gclab.course.figures`, :mod:`~gclab.course.diagrams`) and published as a static
site (:mod:`~gclab.course.site`, ``gclab site``).
"""
