"""The course's notebooks: built from their jupytext sources (:mod:`~gclab.course.notebooks`,
``gclab notebooks``), executed (:mod:`~gclab.course.execute`), drawn
(:mod:`~gclab.course.figures`, :mod:`~gclab.course.diagrams`) and published as a static site
(:mod:`~gclab.course.site`, ``gclab site``).
"""
