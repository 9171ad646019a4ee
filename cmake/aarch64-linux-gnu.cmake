# Cross-compiling for AArch64 Linux with Debian's g++-aarch64-linux-gnu; the binaries run under
# qemu-user (Debian package qemu-user), which ctest and gtest_discover_tests call through
# CMAKE_CROSSCOMPILING_EMULATOR. Used by `make test-neon`:
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Such a build is SLM_KERNELS_ONLY (Debian has no arm64 PCRE2/CLI11/GoogleTest for x86 hosts).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(SLM_AARCH64_SYSROOT /usr/aarch64-linux-gnu CACHE PATH "AArch64 libraries for the linker and qemu -L")
set(CMAKE_FIND_ROOT_PATH ${SLM_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# -cpu max: a CPU with every extension qemu knows, among them ASIMDDP (SDOT/UDOT), so that
# dispatch.cpp picks the neon table.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L ${SLM_AARCH64_SYSROOT} -cpu max)
