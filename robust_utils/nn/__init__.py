"""nn: the networks and their layers (imports core only).

    models     MLP, the 2-conv + 2-fc MNIST CNN, LeNet-5, ``build_model``
    resnets    WideResNet, CIFAR ResNet        inception  paper 000's Inception CNN for MNIST
    layers     stochastic linear layers: SDR (Khan et al. 2019), DropConnect; the mean-network switch
    lwta       LWTA activations (deterministic, stochastic) and IBP-gated layers (Panousis et al. 2021)
    pni        parametric noise injection (Rakin et al. 2019)
    randomness ``is_random``: does a model's forward pass draw randomness?
"""
