import QtQuick
import QtQuick.Controls
import QtQuick.Layouts

ApplicationWindow {
    id: window
    objectName: "mainWindow"
    width: 1100
    height: 720
    minimumWidth: 760
    minimumHeight: 520
    visible: true
    title: "Veraltheim"

    // The application palette, which the desktop sets (light or dark) and changes at run time;
    // the Controls style alone keeps a fixed palette of its own. Copied per colour group so
    // disabled controls still look disabled.
    SystemPalette { id: systemActive; colorGroup: SystemPalette.Active; onPaletteChanged: window.followSystemPalette() }
    SystemPalette { id: systemDisabled; colorGroup: SystemPalette.Disabled }
    function followSystemPalette() {
        const roles = ["window", "windowText", "base", "alternateBase", "text", "button",
                       "buttonText", "highlight", "highlightedText", "light", "midlight", "mid",
                       "dark", "shadow", "placeholderText", "toolTipBase", "toolTipText"]
        for (const role of roles) {
            palette.active[role] = systemActive[role]
            palette.inactive[role] = systemActive[role]
            palette.disabled[role] = systemDisabled[role]
        }
    }
    Component.onCompleted: followSystemPalette()

    readonly property var viewNames: ["Workbench", "Runs", "Notes", "Connection", "Inspector", "Settings"]
    property alias currentView: nav.currentIndex

    function showView(name) {
        const i = viewNames.indexOf(name)
        if (i >= 0) nav.currentIndex = i
    }

    Shortcut { sequence: "Ctrl+R"; context: Qt.ApplicationShortcut; onActivated: workbench.run() }
    Shortcut { sequence: "Esc"; context: Qt.ApplicationShortcut; onActivated: workbench.cancel() }
    Repeater {
        model: window.viewNames.length
        Item {
            Shortcut {
                sequence: "Ctrl+" + (index + 1)
                context: Qt.ApplicationShortcut
                onActivated: nav.currentIndex = index
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
                model: window.viewNames
                TabButton {
                    objectName: "nav" + modelData
                    text: modelData
                    Accessible.name: modelData + " view"
                    ToolTip.visible: hovered
                    ToolTip.text: modelData + " (Ctrl+" + (index + 1) + ")"
                }
            }
        }
        MessageBar { Layout.fillWidth: true }
    }

    StackLayout {
        id: views
        objectName: "views"
        anchors.fill: parent
        currentIndex: nav.currentIndex
        WorkbenchView {}
        RunsView {}
        NotesView {}
        ConnectionView {}
        InspectorView {}
        SettingsView {}
    }

    footer: ToolBar {
        objectName: "statusBar"
        RowLayout {
            anchors.fill: parent
            anchors.leftMargin: 10
            anchors.rightMargin: 10
            Rectangle {
                width: 10; height: 10; radius: 5
                color: connection.state === "connected" ? "#2e9d4c"
                     : connection.state === "offline" ? "#c0392b"
                     : connection.state === "disconnected" ? "#888888" : "#d39e00"
            }
            Label {
                objectName: "statusConnection"
                text: connection.summary
                Accessible.name: "Connection status: " + text
                elide: Text.ElideRight
                Layout.fillWidth: true
            }
            Label {
                objectName: "statusJob"
                text: workbench.running ? workbench.status + " " + Math.round(workbench.progress * 100) + "%" : workbench.status
                Accessible.name: "Job status: " + text
            }
        }
    }
}
