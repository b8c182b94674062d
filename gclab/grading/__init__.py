"""``gclab grade``: grade learner notebooks in a sandbox that holds no answers.

:mod:`~gclab.grading.grade` (the command) reads each submission
(:mod:`~gclab.grading.submission`), runs it in a :mod:`~gclab.grading.sandbox` (bubblewrap as
:mod:`~gclab.grading.bwrap` starts it, a file-capped ``/tmp`` from
:mod:`~gclab.grading.capped_tmp`, cgroups from :mod:`~gclab.grading.limits`, an answer-free
:mod:`~gclab.grading.view` of gclab, the :mod:`~gclab.grading.worker` inside) and computes every
verdict outside it (:mod:`~gclab.grading.trusted`), from data that crosses a size-capped
channel (:mod:`~gclab.grading.wire`, :mod:`~gclab.grading.skeleton`). What is an exercise's
answer: :mod:`~gclab.grading.reference_code` with :mod:`~gclab.grading.library_code`. One
graded notebook and its outputs: :mod:`~gclab.grading.result`; a class's files:
:mod:`~gclab.grading.gradebook`, :mod:`~gclab.grading.class_report`,
:mod:`~gclab.grading.similarity`.
"""
