"""Native sources shipped with the package: CUDA C kernels compiled at run time (cuda/)."""
