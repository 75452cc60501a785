// run_vm: load a TVM Relax VM library, run "main" on float32 inputs, write the first output of each.
//
// Why C++: under qemu-user an aarch64 Python + TVM import takes ~9 s, this runner ~0.8 s
// (docs/tvm.md §2). It links only the aarch64 libtvm_runtime.so / libtvm_ffi.so from
// the apache-tvm wheels and uses ffi headers only (tvm/runtime/tensor.h needs a missing header).
//
// usage: run_vm LIB.so INPUT.f32 N,C,H,W OUTPUT.f32
// INPUT.f32 holds k >= 1 inputs of shape N,C,H,W back to back (raw little-endian float32); "main"
// runs once per input and OUTPUT.f32 gets the k outputs back to back.
// stdout: "shape d0,d1,..." of one output, then "runs k".
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

struct CPUAlloc {
  void AllocData(DLTensor* t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; ++i) n *= static_cast<size_t>(t->shape[i]);
    t->data = std::aligned_alloc(64, ((n * ((t->dtype.bits * t->dtype.lanes + 7) / 8)) + 63) / 64 * 64);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

static std::vector<int64_t> ParseShape(const std::string& s) {
  std::vector<int64_t> dims;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) dims.push_back(std::stoll(tok));
  return dims;
}

static std::vector<char> ReadFile(const char* path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot read ") + path);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: run_vm LIB.so INPUT.f32 N,C,H,W OUTPUT.f32\n";
    return 2;
  }
  try {
    std::vector<int64_t> dims = ParseShape(argv[3]);
    std::vector<char> x = ReadFile(argv[2]);
    size_t numel = 1;
    for (int64_t d : dims) numel *= static_cast<size_t>(d);
    if (x.empty() || x.size() % (numel * 4) != 0) throw std::runtime_error("input size is not a multiple of the shape");
    size_t runs = x.size() / (numel * 4);

    ffi::Module lib = ffi::Module::LoadFromFile(argv[1]);
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    // device type, device id, allocator type (2 = pooled)
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
    ffi::Function main_fn = vm->GetFunction("main").value();

    std::ofstream f(argv[4], std::ios::binary);
    for (size_t r = 0; r < runs; ++r) {
      ffi::Tensor in = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::Shape(dims), DLDataType{kDLFloat, 32, 1},
                                                DLDevice{kDLCPU, 0});
      std::memcpy(in.data_ptr(), x.data() + r * numel * 4, numel * 4);
      ffi::Any ret = main_fn(in);
      ffi::Tensor out = ret.as<ffi::Tensor>().has_value()
                            ? ret.cast<ffi::Tensor>()
                            : ret.cast<ffi::Array<ffi::Any>>()[0].cast<ffi::Tensor>();
      if (out.dtype().code != kDLFloat || out.dtype().bits != 32) throw std::runtime_error("output is not float32");
      size_t on = 1;
      for (int i = 0; i < out.ndim(); ++i) on *= static_cast<size_t>(out.shape()[i]);
      if (r == 0) {
        std::cout << "shape ";
        for (int i = 0; i < out.ndim(); ++i) std::cout << (i ? "," : "") << out.shape()[i];
        std::cout << "\n";
      }
      f.write(static_cast<const char*>(out.data_ptr()), static_cast<std::streamsize>(on * 4));
    }
    std::cout << "runs " << runs << "\n";
    return f ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "run_vm: " << e.what() << "\n";
    return 1;
  }
}
