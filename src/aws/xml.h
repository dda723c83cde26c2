// Small helpers over pugixml for AWS's XML answers. Element names are
// compared by local name, so a namespace prefix ("ec2:instanceId") or a
// default namespace (EC2's xmlns="http://ec2.amazonaws.com/doc/2016-11-15/")
// makes no difference.
#pragma once

#include <pugixml.hpp>

#include <string>
#include <vector>

namespace yard::aws::xml {

// The local part of an element name ("ec2:item" -> "item").
const char* LocalName(pugi::xml_node node);
// The first child element with local name `name` (a null node if none).
pugi::xml_node Child(pugi::xml_node node, const char* name);
// Child elements with local name `name`.
std::vector<pugi::xml_node> Children(pugi::xml_node node, const char* name);
// The trimmed text of child `name` ("" if absent).
std::string Text(pugi::xml_node node, const char* name);
// Follows a path of local names ("instanceState/name").
pugi::xml_node Path(pugi::xml_node node, const std::string& path);

}  // namespace yard::aws::xml
