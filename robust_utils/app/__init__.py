"""app: the command-line tools and what a notebook leaves behind (imports every layer).

    profiles   profiles, notebook parameters, their values at a profile
    inputs     strict YAML (UTF-8, no duplicate keys)      paramtypes  a parameters cell's names, defaults, types
    rules      the parameters' valid ranges (notebooks/params/schema.yaml), checked up front and in the notebook
    preflight  data files and writable folders, checked before any kernel starts
    execute    ``python -m robust_utils run``: papermill execution, status, Ctrl-C
    progress   section lines, timings, status.json       run_command  the ``run`` subcommand's arguments
    summary    SUMMARY.md, reading results.json
    results    results.json and figures of one notebook
    report     the static HTML site (report_index, report_pages)   bundle   the classroom checkpoint bundle (export)
    assign     student copies (nbgrader's preprocessors)   exercises  the autograder cells' fixed inputs
    grade      ``python -m robust_utils grade`` (grade_kernel, grade_policy, grade_feedback)
    cli        ``python -m robust_utils``
"""
