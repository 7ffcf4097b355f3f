#pragma once
// nnr's one exception type. Library code throws it with a message that starts with the
// operation in brackets ("[checkpoint] ...") and says what was expected and what was found;
// only apps/ catches it and turns it into "error: ..." and a non-zero exit.
#include <stdexcept>
#include <string>

namespace nnr {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A bad argument or option value (the CLI maps it to exit code 2, like a bad flag).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

}  // namespace nnr
