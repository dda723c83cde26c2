// ValidateNotebook (cli/notebook_format.cc).
#include <gtest/gtest.h>

#include "cli/notebook.h"

namespace yard::cli {
namespace {

std::string Message(std::string_view text) {
  Status s = ValidateNotebook("nb.ipynb", text);
  return s.ok() ? "" : s.message();
}

TEST(ValidateNotebook, AcceptsAnNbformat4Notebook) {
  const char* nb = R"nb({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
      {"cell_type": "markdown", "metadata": {}, "source": "# hi"},
      {"cell_type": "code", "metadata": {}, "source": ["print(1)\n", "print(2)"],
       "outputs": [], "execution_count": null}]})nb";
  EXPECT_EQ(Message(nb), "");
  EXPECT_EQ(Message(R"({"nbformat": 4, "nbformat_minor": 2, "metadata": {}, "cells": []})"), "");
}

TEST(ValidateNotebook, InvalidJsonSaysSoWithTheParserPosition) {
  std::string m = Message(R"({"cells": [ {"cell_type": "code", )");
  EXPECT_NE(m.find("nb.ipynb is not valid JSON"), std::string::npos) << m;
  EXPECT_NE(m.find("parse error"), std::string::npos) << m;
  EXPECT_NE(Message("").find("not valid JSON"), std::string::npos);
}

// Found by fuzz/notebook_fuzzer.cc: a number too large for a double is the
// parser's out_of_range, not a parse_error, and went uncaught (yard fit
// model.ipynb aborted).
TEST(ValidateNotebook, ANumberTooLargeIsInvalidJsonNotACrash) {
  std::string m = Message(R"({"nbformat_minor": 6e333333333, "cells": []})");
  EXPECT_NE(m.find("nb.ipynb is not valid JSON"), std::string::npos) << m;
}

TEST(ValidateNotebook, OtherNbformatVersionsAskForAConversion) {
  std::string m = Message(R"({"nbformat": 3, "worksheets": []})");
  EXPECT_NE(m.find("nbformat 3"), std::string::npos) << m;
  EXPECT_NE(m.find("jupyter nbconvert"), std::string::npos) << m;
  EXPECT_NE(Message(R"({"cells": []})").find("no nbformat version"), std::string::npos);
  EXPECT_NE(Message("[1, 2]").find("not a notebook"), std::string::npos);
}

TEST(ValidateNotebook, CellsMustBeAListOfCellsWithTypeAndSource) {
  EXPECT_NE(Message(R"({"nbformat": 4})").find("no `cells` list"), std::string::npos);
  EXPECT_NE(Message(R"({"nbformat": 4, "cells": {}})").find("no `cells` list"), std::string::npos);
  const char* damaged = R"({"nbformat": 4, "cells": [
      {"cell_type": "code", "source": "1"}, {"cell_type": "code"}]})";
  std::string m = Message(damaged);
  EXPECT_NE(m.find("cell 2 lacks a cell_type or source"), std::string::npos) << m;
}

}  // namespace
}  // namespace yard::cli
