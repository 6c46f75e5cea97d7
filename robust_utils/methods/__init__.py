"""methods: what is one paper's own, and the training recipes of the notebooks (imports every layer below app).

    calibration  paper 000: EM soft labels (Algorithm 1), regression weights (eq. 7, 8, 14)
    regression   paper 000: the regression experiment (diabetes data)
    critic       paper 003 (Matyasko & Chau 2018): the adversary critic and its objective
    sdr          paper 004 (Khan et al. 2019): SDR-decay's update, the variance thresholds
    lwta_elbo    Panousis et al. 2021 (used by paper 002): the Stochastic-LWTA ELBO objective
    recipes      the training recipes notebooks 01-05 call and notebook 06 reuses
    defenses     notebook 06's MNIST defenses, built from the recipes
    leaderboard  notebook 06's protocols, AutoAttack per defense, the paragraphs
"""
