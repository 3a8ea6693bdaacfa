// kernels/cuda/attention.cu: written in the CUDA backend issue.
