// kernels/cuda/norm.cu: written in the CUDA backend issue.
