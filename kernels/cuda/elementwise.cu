// kernels/cuda/elementwise.cu: written in the CUDA backend issue.
