//go:build !shimlib

// Reading torch.save files (the zip format PyTorch writes since 1.6) with libtorch's own unpickler
// (torch::jit::Unpickler, what torch::pickle_load runs) and its zip reader (PyTorchStreamReader).
// Go prepares data.pkl first (pickle.go): libtorch's unpickler turns every collections.OrderedDict
// into None, and a state dict is an OrderedDict.
#include "pickle.h"

#include <torch/csrc/jit/api/compilation_unit.h>
#include <torch/csrc/jit/serialization/unpickler.h>
#include <torch/torch.h>

#include <caffe2/serialize/inline_container.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

char* pk_dupmsg(const char* s) {
  size_t n = std::strlen(s);
  char* p = (char*)std::malloc(n + 1);
  if (p) std::memcpy(p, s, n + 1);
  return p;
}

using Found = std::vector<std::pair<std::string, at::Tensor>>;

std::string key_string(const c10::IValue& k) {
  if (k.isString()) return k.toStringRef();
  if (k.isInt()) return std::to_string(k.toInt());
  return "";  // other keys (tuples, ...) never name tensors
}

// collect walks dicts from v and records every tensor under its key path (levels joined by '\t').
void collect(const c10::IValue& v, const std::string& prefix, int depth, Found& out) {
  if (v.isTensor()) {
    out.emplace_back(prefix, v.toTensor());
    return;
  }
  if (!v.isGenericDict() || depth > 8) return;
  for (const auto& kv : v.toGenericDict()) {
    std::string k = key_string(kv.key());
    if (k.empty()) continue;
    if (k.find('\n') != std::string::npos || k.find('\t') != std::string::npos)
      throw std::runtime_error("key \"" + k + "\" holds a newline or a tab");
    collect(kv.value(), depth == 0 ? k : prefix + '\t' + k, depth + 1, out);
  }
}

}  // namespace

extern "C" {

char* pt_pickle_load(const char* path, const char* pkl, int64_t pkl_len, char** paths, int64_t* paths_len,
                     void*** ts, int64_t* n) {
  try {
    caffe2::serialize::PyTorchStreamReader zip{std::string(path)};
    size_t pos = 0;
    auto reader = [&](char* buf, size_t len) -> size_t {
      size_t k = std::min(len, (size_t)pkl_len - pos);
      std::memcpy(buf, pkl + pos, k);
      pos += k;
      return k;
    };
    // Objects other than tensors and containers (argparse.Namespace, numpy scalars, ...) become empty
    // opaque objects: they never hold weights, and an unknown class must not fail the whole file.
    auto cu = std::make_shared<torch::jit::CompilationUnit>();
    auto resolve = [cu](const c10::QualifiedName& name) -> c10::StrongTypePtr {
      auto cls = cu->get_class(name);
      if (!cls) {
        cls = c10::ClassType::create(name, cu);
        cu->register_type(cls);
      }
      return c10::StrongTypePtr(cu, cls);
    };
    auto load_obj = [](const c10::StrongTypePtr& type, const c10::IValue&) {
      return c10::ivalue::Object::create(type, 0);
    };
    auto record = [&](const std::string& key) { return std::get<0>(zip.getRecord("data/" + key)); };
    torch::jit::Unpickler up(reader, resolve, load_obj, record, c10::Device(c10::kCPU));
    c10::IValue root = up.parse_ivalue();
    Found found;
    collect(root, "", 0, found);
    std::string joined;
    for (size_t i = 0; i < found.size(); i++) {
      if (i) joined += '\n';
      joined += found[i].first;
    }
    *paths = (char*)std::malloc(joined.size() + 1);
    std::memcpy(*paths, joined.data(), joined.size());
    *paths_len = (int64_t)joined.size();
    *ts = (void**)std::malloc(sizeof(void*) * (found.size() ? found.size() : 1));
    for (size_t i = 0; i < found.size(); i++) (*ts)[i] = new at::Tensor(std::move(found[i].second));
    *n = (int64_t)found.size();
  } catch (const c10::Error& e) {
    return pk_dupmsg(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return pk_dupmsg(e.what());
  } catch (...) {
    return pk_dupmsg("unknown C++ exception");
  }
  return nullptr;
}

}  // extern "C"
