// The curvkit C++ API in one include.
#pragma once

#include "curvkit/curvature.hpp"
#include "curvkit/linalg.hpp"
#include "curvkit/ot.hpp"
#include "curvkit/runtime.hpp"
#include "curvkit/sparse.hpp"
#include "curvkit/special.hpp"
#include "curvkit/types.hpp"
#include "curvkit/version.hpp"
