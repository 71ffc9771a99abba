import Foundation

/// Where the next page of a newest-first listing starts: the last item's time and id. The next page is
/// everything strictly older (keyset paging), so a page costs the same however deep in the history it is,
/// and items written meanwhile neither repeat nor shift what comes next.
///
/// Its text is `MILLISECONDS.ID` (`1733190000000.req_x7k...`, at most 81 characters); clients pass it back
/// as they got it.
public struct PageCursor: Sendable, Equatable {
    public var at: Date
    public var id: String

    public init(at: Date, id: String) {
        self.at = Date(unixMilliseconds: at.unixMilliseconds)
        self.id = id
    }

    /// Reads a cursor's text; nil when it is not one this server handed out. (A time before 1970, from an
    /// imported store or a clock set wrong, is negative.)
    public init?(_ text: String) {
        guard let dot = text.firstIndex(of: "."), text.utf8.count <= 81 else { return nil }
        let signed = text[..<dot], id = String(text[text.index(after: dot)...])
        let millis = signed.hasPrefix("-") ? signed.dropFirst() : signed
        guard (1...15).contains(millis.count), millis.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int64(signed),
              Identifier.isWellFormed(id) else { return nil }
        self.init(at: Date(unixMilliseconds: value), id: id)
    }

    public var text: String { "\(at.unixMilliseconds).\(id)" }

    public static let problem = "cursor is not one this server handed out: pass next_cursor from the previous page as it is, or leave it out for the first page"
}

/// One page of a listing and, when more may follow, the cursor of the next one.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    public var next: PageCursor?

    public init(items: [Item], next: PageCursor?) {
        self.items = items
        self.next = next
    }

    /// The page cut from `fetched` (the rows a query with `LIMIT limit` returned, newest first): a full page
    /// may have more after it, a short one is the last.
    public init(fetched: [Item], limit: Int, cursor: (Item) -> PageCursor) {
        self.items = fetched
        self.next = fetched.count >= limit ? fetched.last.map(cursor) : nil
    }

    public func map<Other: Sendable>(_ transform: (Item) throws -> Other) rethrows -> Page<Other> {
        Page<Other>(items: try items.map(transform), next: next)
    }
}
