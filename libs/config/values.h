// Parsers and formatters for single config values. Each parser takes the trimmed value
// text and returns the value or an Error whose message says what is wrong with it (the
// caller adds file, line and key). Each formatter writes what its parser reads back.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/text.h"
#include "config/config.h"

namespace kg::config {

// True when the text looks like it carries a trailing comment (`... # x` or `#x`).
bool has_inline_comment(std::string_view value);

// `7000,8000:udp,9000:tcp`: 1..32 items of port[:proto], port 1-65535, proto tcp|udp
// (trimmed, any case, default tcp). Whitespace around items is allowed.
Result<std::vector<Knock>> parse_knock_sequence(std::string_view text);
std::string format_knock_sequence(const std::vector<Knock>& sequence);

// knockd's tcpflags list applied on top of `base` (repeated lines add up; a later mention
// of a flag replaces an earlier one). Tokens are not trimmed, exactly as knockd.
Result<TcpFlagsTest> parse_tcpflags(std::string_view text, TcpFlagsTest base = {});

// A non-negative whole number of seconds (knockd's seq_timeout / cmd_timeout).
Result<int> parse_seconds(std::string_view text);

// Decimal only, inside [min, max].
Result<uint32_t> parse_decimal(std::string_view text, uint32_t min, uint32_t max);

// `90`, `90s`, `15m`, `2h`, `1d`: positive, at most 365 days.
Result<std::chrono::seconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::seconds d);

// yes|no|true|false|on|off, any case.
Result<bool> parse_bool(std::string_view text);

// `VALUE[/MASK]`, hex (0x...) or decimal, mask defaults to 0xffffffff. Rejects a zero mask,
// value bits outside the mask, a zero value, and masks overlapping the bits OpenWrt's
// mwan3 (0x3f00) or pbr (0x00ff0000) use.
Result<FwMark> parse_fwmark(std::string_view text);
std::string format_fwmark(const FwMark& mark);

// 1..0xfffffffe except 253, 254, 255 (the kernel's default, main and local tables).
Result<uint32_t> parse_table(std::string_view text);

// `default via ADDR [dev IF]` | `PREFIX via ADDR [dev IF]` | `PREFIX dev IF`.
Result<Route> parse_route(std::string_view text);
std::string format_route(const Route& route);

// `PROTO/PORT -> ADDR[:PORT]`, IPv6 hosts with a port as `[ADDR]:PORT`; `self PROTO/PORT`
// for a port of the gateway itself.
Result<Exposure> parse_exposure(std::string_view text);
std::string format_exposure(const Exposure& e);

// `tcp/22,udp/1000-2000,icmp`.
Result<std::vector<AllowRule>> parse_allow(std::string_view text);
std::string format_allow(const std::vector<AllowRule>& rules);

// `192.0.2.1,10.0.0.0/8,2001:db8::/32`; prefixes must not have host bits set.
Result<std::vector<IpPrefix>> parse_prefix_list(std::string_view text);
std::string format_prefix_list(const std::vector<IpPrefix>& prefixes);

// Linux interface names: 1-15 bytes, no '/', ':' or whitespace, not "." or "..".
bool valid_interface_name(std::string_view name);
Result<std::vector<std::string>> parse_interface_list(std::string_view text);
std::string join(const std::vector<std::string>& items, std::string_view separator);

// `ManagementFrom = kg-lan, 198.51.100.0/24`: interface names and prefixes (an address
// alone is a host prefix), in any order.
struct ManagementFrom {
  std::vector<std::string> interfaces;
  std::vector<IpPrefix> prefixes;
};
Result<ManagementFrom> parse_management_from(std::string_view text);
std::string format_management_from(const std::vector<std::string>& interfaces,
                                   const std::vector<IpPrefix>& prefixes);
// `ManagementPorts = tcp/22,tcp/9090`: like `allow`, without icmp.
Result<std::vector<AllowRule>> parse_management_ports(std::string_view text);

// knockgate-webd's `WebListen`: `127.0.0.1:8080,[::1]:8443`, 1..16 distinct endpoints,
// port 1-65535.
Result<std::vector<WebEndpoint>> parse_web_listen(std::string_view text);
std::string format_web_listen(const std::vector<WebEndpoint>& endpoints);

// Profile names: a letter or digit, then letters, digits, '.', '_', '-'; at most 64 bytes.
bool valid_profile_name(std::string_view name);

// User and group names: a letter or '_', then letters, digits, '.', '_', '-', an optional
// final '$'; at most 32 bytes.
bool valid_account_name(std::string_view name);

}  // namespace kg::config
