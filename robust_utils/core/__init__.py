"""core: what every other layer stands on; imports nothing else of robust_utils.

    runtime  device ("auto"), seeds, threads        paths   repository, data, figures, cache, bundle folders
    checks   input checks (errors before any work)  data    datasets as tensors in [0, 1]
    datafiles  each dataset's files, checksums, the preflight check   download  ``python -m robust_utils download`` (pooch)
    losses   cross-entropy, the HR loss, soft CE... stats   intervals and tests for accuracies
    io       atomic writes, JSON                     store   checkpoint keys, cache, bundle lookup, ledger
    switch   temporarily set module attributes
"""
