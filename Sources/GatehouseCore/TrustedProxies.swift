import Foundation

/// The reverse proxies whose `X-Forwarded-For` tells who the client is (`serve --trusted-proxies`): single
/// addresses or CIDR blocks, IPv4 or IPv6. A connection from anywhere else is its own client, whatever
/// header it sends; empty (the default), every connection is.
public struct TrustedProxies: Sendable, Equatable {
    struct Block: Sendable, Equatable {
        var bytes: [UInt8]
        var prefix: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == bytes.count else { return false }
            var left = prefix
            for (a, b) in zip(address, bytes) where left > 0 {
                let mask: UInt8 = left >= 8 ? 0xFF : ~(0xFF >> UInt8(left))
                if a & mask != b & mask { return false }
                left -= 8
            }
            return true
        }
    }

    let blocks: [Block]
    /// As given, for messages and the start-up log.
    public let text: String

    public static let none = TrustedProxies(blocks: [], text: "")

    public var isEmpty: Bool { blocks.isEmpty }

    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// `text`: addresses and blocks separated by commas (`10.0.0.0/8, 192.0.2.7, fd00::/8`); empty for none.
    public static func parse(_ text: String) throws(Problem) -> TrustedProxies {
        var blocks: [Block] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            let parts = item.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard let bytes = address(String(parts[0])) else {
                throw Problem(description: "`\(item)` is not an IP address or a CIDR block like 10.0.0.0/8 or fd00::/8")
            }
            var prefix = bytes.count * 8
            if parts.count == 2 {
                guard let given = Int(parts[1]), (0...prefix).contains(given), parts[1].allSatisfy(\.isASCII) else {
                    throw Problem(description: "`\(item)`: the prefix length after `/` must be a number from 0 to \(prefix)")
                }
                prefix = given
            }
            blocks.append(Block(bytes: bytes, prefix: prefix))
        }
        return TrustedProxies(blocks: blocks, text: text)
    }

    /// The address's bytes (4 for IPv4, 16 for IPv6; an IPv4 address written as IPv6, `::ffff:a.b.c.d`, is IPv4).
    static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes.prefix(10).allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF { return Array(bytes.suffix(4)) }
        return bytes
    }

    public func contains(_ address: String) -> Bool {
        guard !blocks.isEmpty, let bytes = Self.address(address) else { return false }
        return covers(bytes)
    }

    private func covers(_ address: [UInt8]) -> Bool { blocks.contains { $0.contains(address) } }

    /// Who the client is for a connection from `peer` whose request carried `forwardedFor` (the values of
    /// every `X-Forwarded-For` line, in order). Each trusted proxy appends the address it was connected from,
    /// so the list is read from its end: the first address not of a trusted proxy is the client; what lies
    /// before it anyone could have written. A peer that is not a trusted proxy is the client, and so is a
    /// trusted one when the header is missing or what it names is not an address.
    public func client(peer: String?, forwardedFor: [String]) -> String? {
        guard let peer, contains(peer) else { return peer }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        var client = peer
        for hop in hops.reversed() {
            guard let bytes = Self.address(Self.withoutPort(hop)) else { return peer }
            client = Self.written(bytes)
            if !covers(bytes) { break }
        }
        return client
    }

    /// `hop` without the port some proxies add (`192.0.2.7:4711`, `[2001:db8::1]:4711`).
    static func withoutPort(_ hop: String) -> String {
        if hop.hasPrefix("["), let end = hop.firstIndex(of: "]") { return String(hop[hop.index(after: hop.startIndex)..<end]) }
        if hop.contains("."), let colon = hop.firstIndex(of: ":"), hop.lastIndex(of: ":") == colon { return String(hop[..<colon]) }
        return hop
    }

    /// The address in its one usual spelling (so that one client is one key, however a proxy wrote it).
    static func written(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) } != nil
        return ok ? String(cString: buffer) : ""
    }
}
