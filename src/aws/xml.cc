#include "aws/xml.h"

#include <cstring>

namespace yard::aws::xml {

const char* LocalName(pugi::xml_node node) {
  const char* name = node.name();
  const char* colon = std::strrchr(name, ':');
  return colon ? colon + 1 : name;
}

pugi::xml_node Child(pugi::xml_node node, const char* name) {
  for (pugi::xml_node c = node.first_child(); c; c = c.next_sibling()) {
    if (c.type() == pugi::node_element && std::strcmp(LocalName(c), name) == 0) return c;
  }
  return {};
}

std::vector<pugi::xml_node> Children(pugi::xml_node node, const char* name) {
  std::vector<pugi::xml_node> out;
  for (pugi::xml_node c = node.first_child(); c; c = c.next_sibling()) {
    if (c.type() == pugi::node_element && std::strcmp(LocalName(c), name) == 0) out.push_back(c);
  }
  return out;
}

std::string Text(pugi::xml_node node, const char* name) {
  std::string s = Child(node, name).child_value();
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

pugi::xml_node Path(pugi::xml_node node, const std::string& path) {
  size_t start = 0;
  while (node && start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string part =
        path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    node = Child(node, part.c_str());
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return node;
}

}  // namespace yard::aws::xml
