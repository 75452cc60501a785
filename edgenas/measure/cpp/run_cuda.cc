// run_cuda: load a TVM Relax VM library built for a CUDA target, run "main" on the GPU on
// float32 inputs, write the first output of each, and time the runs.
//
// Why C++: a GPU host needs only this binary, libtvm_runtime.so, libtvm_runtime_cuda.so,
// libtvm_ffi.so and the CUDA runtime they link (a few MiB), not the full TVM wheel with its
// compiler (docs/tvm.md, "CUDA without a GPU"; docs/distributed.md for the GPU check script).
// Like run_vm.cc it uses the ffi headers only; device memory goes through the runtime's own
// global functions (runtime.TVMTensorAllocWithScope / CopyFromBytes / CopyToBytes), so it needs
// no CUDA headers to build.
//
// usage: run_cuda LIB.so INPUT.f32 N,C,H,W OUTPUT.f32 [REPEAT]
// INPUT.f32 holds k >= 1 inputs of shape N,C,H,W back to back (raw little-endian float32); "main"
// runs once per input and OUTPUT.f32 gets the k outputs back to back. Then the first input runs
// REPEAT (default 100) more times, each followed by a stream synchronisation.
// stdout: "shape d0,d1,...", "runs k", "latency_ms median p10 p90 REPEAT".
// The CUDA device API must be registered before the library loads: the runner dlopens
// libtvm_runtime_cuda.so (found through LD_LIBRARY_PATH, or $EDGENAS_TVM_RUNTIME_CUDA).
#include <dlfcn.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

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

static ffi::Function Global(const char* name) {
  auto f = ffi::Function::GetGlobal(name);
  if (!f.has_value()) throw std::runtime_error(std::string("the TVM runtime has no ") + name);
  return f.value();
}

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::cerr << "usage: run_cuda LIB.so INPUT.f32 N,C,H,W OUTPUT.f32 [REPEAT]\n";
    return 2;
  }
  try {
    const char* cuda_rt = std::getenv("EDGENAS_TVM_RUNTIME_CUDA");
    if (!dlopen(cuda_rt ? cuda_rt : "libtvm_runtime_cuda.so", RTLD_NOW | RTLD_GLOBAL))
      throw std::runtime_error(std::string("cannot load the TVM CUDA runtime: ") + dlerror());
    int repeat = argc == 6 ? std::atoi(argv[5]) : 100;
    std::vector<int64_t> dims = ParseShape(argv[3]);
    std::vector<char> x = ReadFile(argv[2]);
    size_t numel = 1;
    for (int64_t d : dims) numel *= static_cast<size_t>(d);
    if (x.empty() || x.size() % (numel * 4) != 0) throw std::runtime_error("input size is not a multiple of the shape");
    size_t runs = x.size() / (numel * 4);

    const DLDevice gpu{kDLCUDA, 0};
    ffi::Function alloc = Global("runtime.TVMTensorAllocWithScope");
    ffi::Function from_bytes = Global("runtime.TVMTensorCopyFromBytes");
    ffi::Function to_bytes = Global("runtime.TVMTensorCopyToBytes");
    ffi::Function sync = Global("runtime.Device_StreamSync");

    ffi::Module lib = ffi::Module::LoadFromFile(argv[1]);
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    // (device type, id, allocator: 2 = pooled) for the GPU, then the CPU host
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCUDA), 0, 2, static_cast<int>(kDLCPU), 0, 2);
    ffi::Function main_fn = vm->GetFunction("main").value();

    ffi::Tensor in = alloc(ffi::Shape(dims), DLDataType{kDLFloat, 32, 1}, gpu, ffi::Optional<ffi::String>())
                         .cast<ffi::Tensor>();
    auto first_output = [](const ffi::Any& ret) {
      return ret.as<ffi::Tensor>().has_value() ? ret.cast<ffi::Tensor>()
                                               : ret.cast<ffi::Array<ffi::Any>>()[0].cast<ffi::Tensor>();
    };
    std::ofstream f(argv[4], std::ios::binary);
    std::vector<char> host;
    for (size_t r = 0; r < runs; ++r) {
      from_bytes(in, static_cast<void*>(x.data() + r * numel * 4), static_cast<int64_t>(numel * 4));
      ffi::Tensor out = first_output(main_fn(in));
      if (out.dtype().code != kDLFloat || out.dtype().bits != 32) throw std::runtime_error("output is not float32");
      size_t on = 1;
      for (int i = 0; i < out.ndim(); ++i) on *= static_cast<size_t>(out.shape()[i]);
      if (r == 0) {
        std::cout << "shape ";
        for (int i = 0; i < out.ndim(); ++i) std::cout << (i ? "," : "") << out.shape()[i];
        std::cout << "\n";
      }
      host.resize(on * 4);
      to_bytes(out, static_cast<void*>(host.data()), static_cast<int64_t>(on * 4));  // synchronises
      f.write(host.data(), static_cast<std::streamsize>(on * 4));
    }
    std::cout << "runs " << runs << "\n";

    from_bytes(in, static_cast<void*>(x.data()), static_cast<int64_t>(numel * 4));
    for (int i = 0; i < 10; ++i) main_fn(in);  // warm-up
    sync(gpu, static_cast<void*>(nullptr));
    std::vector<double> ms;
    for (int i = 0; i < repeat; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      main_fn(in);
      sync(gpu, static_cast<void*>(nullptr));
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    if (!ms.empty()) {
      std::sort(ms.begin(), ms.end());
      auto q = [&](double p) { return ms[static_cast<size_t>(p * (ms.size() - 1))]; };
      std::cout << "latency_ms " << q(0.5) << " " << q(0.1) << " " << q(0.9) << " " << ms.size() << "\n";
    }
    return f ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "run_cuda: " << e.what() << "\n";
    return 1;
  }
}
