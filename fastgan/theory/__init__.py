"""The GAN theory made runnable: the optimal discriminator in 1-D, why the minimax G cost saturates, and mode
collapse on the 8-Gaussian ring and 25-Gaussian grid with vanilla and unrolled GANs. Run `python -m fastgan.theory`.
"""
