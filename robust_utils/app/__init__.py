"""app: the command-line tools and what a notebook leaves behind (imports every layer).

    profiles   profiles, notebook parameters, their types and rules
    execute    ``python -m robust_utils run``: papermill execution
    summary    SUMMARY.md, reading results.json
    results    results.json and figures of one notebook
    report     the static HTML site        bundle   the classroom checkpoint bundle (export)
    assign     student copies               exercises the autograder cells' fixed inputs
    cli        ``python -m robust_utils``
"""
