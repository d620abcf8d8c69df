"""package.xml (format 3) of cosmos3_ros and of the message package, and the rosidl CMake."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cosmos3_ros.runtime import node_core

REPO = Path(__file__).resolve().parents[2]


def read_package(path):
    root = ET.parse(path).getroot()
    assert root.tag == "package" and root.get("format") == "3"
    children = [child.tag for child in root]
    # Format 3 fixes the order of the leading elements.
    assert children[:5] == ["name", "version", "description", "maintainer", "license"]
    depends = {}
    for child in root:
        if child.tag.endswith("depend"):
            depends.setdefault(child.tag, set()).add(child.text.strip())
    return root, depends


def test_python_package_xml():
    root, depends = read_package(REPO / "package.xml")
    assert root.findtext("name") == "cosmos3_ros"
    assert root.find("export/build_type").text == "ament_python"
    setup_version = re.search(r'version="([^"]+)"', (REPO / "setup.py").read_text()).group(1)
    assert root.findtext("version") == setup_version
    exec_depends = depends["exec_depend"]
    assert {"cosmos3_ros_msgs", "rclpy", "launch_ros", "ros2bag"} <= exec_depends


def test_every_message_package_the_node_uses_is_an_exec_depend():
    _, depends = read_package(REPO / "package.xml")
    used = {"std_srvs"}  # services of ros/policy_node.py
    for name in dir(node_core):
        value = getattr(node_core, name)
        if isinstance(value, str) and "/msg/" in value:
            used.add(value.split("/")[0])
    assert used <= depends["exec_depend"], used - depends["exec_depend"]


def test_message_package_xml_and_cmake():
    root, depends = read_package(REPO / "msg" / "package.xml")
    assert root.findtext("name") == "cosmos3_ros_msgs"
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert {"ament_cmake", "rosidl_default_generators"} <= depends["buildtool_depend"]
    assert "rosidl_default_runtime" in depends["exec_depend"]
    assert {"std_msgs", "builtin_interfaces"} <= depends["depend"]
    cmake = (REPO / "msg" / "CMakeLists.txt").read_text()
    assert "project(cosmos3_ros_msgs)" in cmake
    assert '"${_interface_base}:msg/ActionChunk.msg"' in cmake
    assert "DEPENDENCIES builtin_interfaces std_msgs" in cmake


def test_the_message_references_only_declared_dependencies():
    text = (REPO / "msg" / "ActionChunk.msg").read_text()
    packages = set(re.findall(r"^\s*([a-z_]+)/[A-Z]\w*", text, flags=re.MULTILINE))
    assert packages == {"std_msgs", "builtin_interfaces"}


@pytest.mark.parametrize("path", ["package.xml", "msg/package.xml"])
def test_catkin_pkg_validates(path):
    package = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg not installed (it is in a ROS 2 install)")
    parsed = package.parse_package(REPO / path)
    parsed.validate()
    assert parsed.package_format == 3


# OMG IDL 4.2 keywords (rosidl writes .idl files; other DDS generators reject these names) and C++ / Python ones.
RESERVED = {
    "abstract", "any", "alias", "attribute", "bitfield", "bitmask", "bitset", "boolean", "case", "char", "component",
    "connector", "const", "consumes", "context", "custom", "default", "double", "exception", "emits", "enum",
    "eventtype", "factory", "false", "finder", "fixed", "float", "getraises", "getter", "home", "import", "in",
    "inout", "interface", "local", "long", "manages", "map", "mirrorport", "module", "multiple", "native", "object",
    "octet", "oneway", "out", "primarykey", "private", "port", "porttype", "provides", "public", "publishes",
    "raises", "readonly", "setraises", "setter", "sequence", "short", "string", "struct", "supports", "switch",
    "true", "truncatable", "typedef", "typeid", "typename", "typeprefix", "unsigned", "union", "uses", "valuebase",
    "valuetype", "void", "wchar", "wstring", "int8", "uint8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
    "delete", "new", "class", "register", "template", "this", "operator", "namespace", "volatile", "signed",
}


def test_message_field_names_are_lowercase_and_not_reserved_anywhere():
    import keyword

    fields = []
    for raw in (REPO / "msg" / "ActionChunk.msg").read_text().splitlines():
        definition = raw.split("#", 1)[0].strip()
        if definition:
            fields.append(definition.split()[1])
    assert "sequence_number" in fields and "data" in fields
    for name in fields:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert name not in RESERVED and not keyword.iskeyword(name), name
