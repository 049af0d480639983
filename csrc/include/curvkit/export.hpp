// Symbol visibility for libcurvkit_core: the one export macro of the public API.
#pragma once

#if defined(_WIN32)
#  if defined(CURVKIT_BUILDING_CORE)
#    define CURVKIT_API __declspec(dllexport)
#  else
#    define CURVKIT_API __declspec(dllimport)
#  endif
#else
#  define CURVKIT_API __attribute__((visibility("default")))
#endif
