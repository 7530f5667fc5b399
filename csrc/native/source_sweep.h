// The copy styles' propagation updates in C++ (source_sweep.cpp), registered on the rethined_engine._native module.
#pragma once

#include <pybind11/pybind11.h>

namespace rethined {

void register_source_sweep(pybind11::module_& m);

}  // namespace rethined
