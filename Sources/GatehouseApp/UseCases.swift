import Foundation
import GatehouseCore
import GatehouseStore
import Logging

/// The application layer, assembled: one value per use case, all sharing one `AppContext`. The
/// transports (HTTP API, web inbox, guard proxy, CLI) hold this and call the use case they need.
public final class UseCases: Sendable {
    public let context: AppContext
    public let tokens: Tokens
    public let webSessions: WebSessions
    public let signIns: SignIns
    public let desk: RequestDesk
    public let slack: SlackDesk
    public let principals: Principals
    public let grants: GrantDesk
    public let checks: AccessChecks
    public let breakGlass: BreakGlassDesk
    public let outbox: Outbox
    public let proxy: ProxyAuthority
    public let audit: AuditLog
    public let housekeeping: Housekeeping

    public init(store: GatehouseStore, policies: PolicyHolder, clock: any WallClock, logger: Logger = Logger(label: "gatehouse"),
                metrics: any AppMetrics = NoMetrics(), tarpit: Tarpit = Tarpit()) {
        let context = AppContext(store: store, policies: policies, clock: clock, logger: logger, metrics: metrics)
        self.context = context
        tokens = Tokens(context)
        webSessions = WebSessions(context, tokens: tokens)
        signIns = SignIns(context, tokens: tokens, webSessions: webSessions)
        desk = RequestDesk(context, tarpit: tarpit, watch: RequestWatch())
        slack = SlackDesk(context, desk: desk)
        principals = Principals(context)
        grants = GrantDesk(context)
        checks = AccessChecks(context)
        breakGlass = BreakGlassDesk(context)
        outbox = Outbox(context)
        proxy = ProxyAuthority(context, tokens: tokens, checks: checks)
        audit = AuditLog(context)
        housekeeping = Housekeeping(context, signIns: signIns)
    }

    public var store: GatehouseStore { context.store }
    public var policies: PolicyHolder { context.policies }
    public var clock: any WallClock { context.clock }
    public var metrics: any AppMetrics { context.metrics }
}
