"""The built-in ``shapes-vit``: procedural scenes, the model, its training and shipped assets.

``render`` draws scenes and swatches, ``model`` builds and loads the ViT, ``train``
reproduces the committed weights, ``assets`` writes the demo images and concept sets.
"""
