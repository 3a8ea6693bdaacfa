// kernels/cuda/conv.cu: written in the CUDA backend issue.
