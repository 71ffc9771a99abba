/// How much harm an action can do, in increasing order. A role allows actions up to a level;
/// `forbidden` is never allowed through Gatehouse.
public enum RiskLevel: String, Sendable, Codable, CaseIterable, Comparable {
    case read, write, dangerous, forbidden

    private var rank: Int {
        switch self {
        case .read: 0
        case .write: 1
        case .dangerous: 2
        case .forbidden: 3
        }
    }

    public static func < (lhs: RiskLevel, rhs: RiskLevel) -> Bool { lhs.rank < rhs.rank }
}
