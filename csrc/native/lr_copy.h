// The LR network's copy steps in C++ (lr_copy.cpp), registered on the rethined_engine._native module.
#pragma once

#include <pybind11/pybind11.h>

namespace rethined {

void register_lr_copy(pybind11::module_& m);

}  // namespace rethined
