pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import Veraltheim

ApplicationWindow {
    id: appWindow
    objectName: "mainWindow"
    // The bridge objects, given by the app (client/ui/shell.py), and the view names in tab order.
    required property Notices notices
    required property SettingsController settings
    required property Connection connection
    required property Workbench workbench
    required property Runs runs
    required property NotesController notes
    required property Inspector inspector
    required property list<string> viewNames

    width: 1100
    height: 720
    minimumWidth: 760
    minimumHeight: 520
    visible: true
    title: "Veraltheim"

    // The application palette, which the desktop sets (light or dark) and changes at run time;
    // the Controls style alone keeps a fixed palette of its own. Copied per colour group so
    // disabled controls still look disabled; only the colours that differ, since each write
    // re-resolves every item's palette (all of them: 35 ms of the first frame).
    SystemPalette { id: systemActive; colorGroup: SystemPalette.Active; onPaletteChanged: appWindow.followSystemPalette() }
    SystemPalette { id: systemDisabled; colorGroup: SystemPalette.Disabled }
    function followSystemPalette() {
        const roles = ["window", "windowText", "base", "alternateBase", "text", "button",
                       "buttonText", "highlight", "highlightedText", "light", "midlight", "mid",
                       "dark", "shadow", "placeholderText"]
        const groups = [[appWindow.palette.active, systemActive],
                        [appWindow.palette.inactive, systemActive],
                        [appWindow.palette.disabled, systemDisabled]]
        for (const [group, system] of groups) {
            for (const role of roles) {
                if (!Qt.colorEqual(group[role], system[role]))
                    group[role] = system[role]
            }
        }
    }
    Component.onCompleted: followSystemPalette()

    property alias currentView: nav.currentIndex

    function showView(name: string) {
        const i = viewNames.indexOf(name)
        if (i >= 0) nav.currentIndex = i
    }

    Shortcut { sequence: "Ctrl+R"; context: Qt.ApplicationShortcut; onActivated: appWindow.workbench.run() }
    Shortcut { sequence: "Esc"; context: Qt.ApplicationShortcut; onActivated: appWindow.workbench.cancel() }
    Repeater {
        model: appWindow.viewNames.length
        Item {
            id: shortcutHolder
            required property int index
            Shortcut {
                sequence: "Ctrl+" + (shortcutHolder.index + 1)
                context: Qt.ApplicationShortcut
                onActivated: nav.currentIndex = shortcutHolder.index
            }
        }
    }

    header: ColumnLayout {
        spacing: 0
        TabBar {
            id: nav
            objectName: "nav"
            Layout.fillWidth: true
            Accessible.name: "Views"
            Repeater {
                model: appWindow.viewNames
                TabButton {
                    id: tab
                    required property string modelData
                    required property int index
                    objectName: "nav" + modelData
                    text: modelData
                    Accessible.name: modelData + " view"
                    ToolTip.visible: hovered
                    ToolTip.text: modelData + " (Ctrl+" + (index + 1) + ")"
                }
            }
        }
        MessageBar { notices: appWindow.notices; Layout.fillWidth: true }
    }

    StackLayout {
        id: views
        objectName: "views"
        anchors.fill: parent
        currentIndex: nav.currentIndex
        LazyView { sourceComponent: WorkbenchView { workbench: appWindow.workbench } }
        LazyView { sourceComponent: RunsView { runs: appWindow.runs } }
        LazyView { sourceComponent: NotesView { notes: appWindow.notes } }
        LazyView { sourceComponent: ConnectionView { connection: appWindow.connection; settings: appWindow.settings } }
        LazyView { sourceComponent: InspectorView { inspector: appWindow.inspector } }
        LazyView { sourceComponent: SettingsView { settings: appWindow.settings } }
    }

    footer: ToolBar {
        objectName: "statusBar"
        RowLayout {
            anchors.fill: parent
            anchors.leftMargin: 10
            anchors.rightMargin: 10
            Rectangle {
                implicitWidth: 10; implicitHeight: 10; radius: 5
                color: appWindow.connection.connected ? "#2e9d4c"
                     : appWindow.connection.offline ? "#c0392b"
                     : !appWindow.connection.linked ? "#888888" : "#d39e00"
            }
            Label {
                objectName: "statusConnection"
                text: appWindow.connection.summary
                Accessible.name: "Connection status: " + text
                elide: Text.ElideRight
                Layout.fillWidth: true
            }
            Label {
                objectName: "statusJob"
                text: appWindow.workbench.running ? appWindow.workbench.status + " " + Math.round(appWindow.workbench.progress * 100) + "%" : appWindow.workbench.status
                Accessible.name: "Job status: " + text
            }
        }
    }
}
