# YARD_SANITIZE=ON (scripts/fuzz.sh builds it in build-fuzz/): the whole code
# base, its unit tests and the libFuzzer targets of fuzz/, built with clang
# under AddressSanitizer and UndefinedBehaviorSanitizer. Included by
# CMakeLists.txt right after the preamble; fuzz/README.md gives the figures
# behind each choice below.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "YARD_SANITIZE needs clang (libFuzzer): configure with "
                      "-DCMAKE_CXX_COMPILER=clang++-14 (Debian: clang-14 libclang-rt-14-dev)")
endif()

# Every error a sanitizer sees stops the program (no recovery), so a finding
# fails the run. fuzzer-no-link instruments all code for libFuzzer's coverage
# without its main(), so the fuzz targets and the tests share every object;
# the ASan runtime answers those hooks in the tests.
set(YARD_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=all)
add_compile_options(-fno-omit-frame-pointer ${YARD_SANITIZERS} -fsanitize=fuzzer-no-link)
add_link_options(${YARD_SANITIZERS})

# The build type "Sanitize" (the default here): -O1 compiles faster than -O2
# and runs the instrumented code nearly as fast; line tables are all a
# sanitizer's stack trace needs (file:line), at a fraction of -g's cost.
set(CMAKE_CXX_FLAGS_SANITIZE "-O1 -gline-tables-only")

# One translation unit per few sources: the headers every file includes
# (cpp-httplib, nlohmann/json, GoogleTest) are parsed once per batch instead
# of once per file. The main build stays one TU per file.
set(CMAKE_UNITY_BUILD ON)
