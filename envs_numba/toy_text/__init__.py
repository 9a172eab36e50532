"""Small example environments written to the kernel protocol."""

KERNELS = ()
