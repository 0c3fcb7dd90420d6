"""ticketscope: how iterative magnitude pruning makes fully connected networks grow local receptive fields."""

__version__ = "0.1.0"
